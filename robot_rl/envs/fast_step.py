"""Compiled single-env step (``MujocoTaskEnv(..., compiled_step=...)``): the per-step work between the action and the
reward in one numba call.

For a small model the physics of a control step costs a few microseconds (cart-pole: ~5 us for two ``mj_step``), and
the Python around it (action noise and latency, the ctrl write, reading the state, sensor noise, building the
observation, the divergence check) cost more than the physics itself. This kernel does that work in one compiled call
that runs ``mj_step`` on the model's and data's raw addresses through libmujoco (the same library copy the bindings
use, see :mod:`robot_rl.core.mujoco_jit`); ``info`` and everything that draws random numbers (noise chunks,
pushes, interval resampling) stay in Python, in the same order as before, so the random stream and every returned
value are those of the Python step (tests compare the two bit for bit).

The kernel reads the env's arrays, its layout and the randomizer's noise buffers through tables of addresses
(``MujocoTaskEnv._k_tab``, which holds the address of ``Randomizer.kernel_ptrs``): numba's dispatch costs per
argument, and it is a sizeable part of a 10 us step. It is compiled for float32 and float64 actions only (contiguous,
writeable): the env converts any other action before the call instead of letting numba compile a variant
mid-episode. It advances the sensor-noise row itself and returns early (status 2) when a noise chunk runs out, so that
the env calls the randomizer only then (or every step, with pushes or interval terms).

It applies to tasks whose observation needs no forward kinematics, with symmetric actuator ranges and no
``_before_physics`` hook (cart-pole, pendulum, reacher; not the arm); other tasks, or a process where numba is missing
or fails to build the kernel, use the Python step. The kernel is built on the first use in a process (about 1-2 s;
ctypes function pointers cannot go into numba's disk cache).

A fatal MuJoCo error inside ``mj_step`` (``mju_error``, e.g. the arena running out of memory) ends the process here
instead of raising ``mujoco.FatalError``; warnings (the divergence counters) behave as in the Python step.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from typing import NamedTuple

# The single-env kernel's table (MujocoTaskEnv._k_tab): the env's arrays [0, TAB_RZ), then these slots.
TAB_RZ, TAB_OI, TAB_NU, TAB_LAY = 12, 13, 14, 15

_lock = threading.Lock()
_kernels: dict = {}  # reward factory (or None) -> compiled kernel
_reason: str | None = None


def unavailable_reason() -> str | None:
    """Why the compiled step cannot be used in this process (None when it can, or was not tried yet)."""
    return _reason


def kernel(reward_factory=None, batch: bool = False):
    """The compiled step kernel for a task (built on the first call per task class); None (with one RuntimeWarning
    per process) when it cannot be built.

    ``reward_factory``: None (the kernel returns no reward; the env calls its ``_evaluate``) or the task's
    ``robot_rl.envs.task.RewardKernel`` (generated from its declared terms): ``factory(njit) -> evaluate(qpos, qvel,
    action, params) -> (reward, terminated,
    success: -1 none / 0 / 1)``, compiled into the kernel. ``batch``: the kernel of ``BatchedBlock`` (N envs of one
    task per call, :func:`_compile_batch`) instead of the single env's.
    """
    global _reason
    key = (reward_factory, batch)
    k = _kernels.get(key)
    if k is not None or _reason is not None:
        return k
    with _lock:
        if key not in _kernels and _reason is None:
            from robot_rl.core import mujoco_jit

            if not mujoco_jit.AVAILABLE:
                _reason = mujoco_jit.unavailable_reason()
            else:
                try:
                    _kernels[key] = (_compile_batch if batch else _compile)(mujoco_jit._find_library(),
                                                                             reward_factory)
                except Exception as exc:  # noqa: BLE001 - any failure to import numba or compile: use Python
                    _reason = f"building the compiled env step failed: {type(exc).__name__}: {exc}"
            if _reason is not None:
                warnings.warn(f"robot_rl.envs.fast_step: {_reason}; envs use the Python step", RuntimeWarning,
                              stacklevel=3)
    return _kernels.get(key)


def warm_up(model, data, call, what: str) -> bool:
    """Run ``call()`` (a first kernel call that compiles it for the caller's argument types) and undo its physics:
    the integration state and the warning counters of ``data`` are restored. False (the failure recorded with
    :func:`failed`, so every env of the process uses Python) when the call raises.
    """
    import mujoco
    import numpy as np

    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    state = np.empty(mujoco.mj_stateSize(model, spec))
    mujoco.mj_getState(model, data, state, spec)
    counters = data.warning.number.copy()
    try:
        call()
        return True
    except Exception as exc:  # noqa: BLE001 - a kernel numba cannot type for this task: use Python
        failed(f"{what} failed its warm-up: {type(exc).__name__}: {exc}")
        return False
    finally:
        mujoco.mj_setState(model, data, state, spec)
        data.warning.number[:] = counters
        mujoco.mj_forward(model, data)


def failed(reason: str) -> None:
    """Record that a kernel failed to build or run its warm-up (every env of this process then uses Python)."""
    global _reason
    if _reason is None:
        _reason = reason
        warnings.warn(f"robot_rl.envs.fast_step: {reason}; envs use the Python step", RuntimeWarning, stacklevel=3)


def _pointer_casts():
    """Numba intrinsics turning an integer address into a float64 / int32 / int64 pointer (for ``numba.carray``)."""
    from numba import types
    from numba.extending import intrinsic

    def pointer_cast(dtype):
        ptr = types.CPointer(dtype)

        @intrinsic
        def cast(typingctx, addr):  # pragma: no cover - compile-time
            def codegen(context, builder, signature, args):
                return builder.inttoptr(args[0], context.get_value_type(ptr))

            return ptr(types.int64), codegen

        return cast

    return pointer_cast(types.float64), pointer_cast(types.int32), pointer_cast(types.int64)


def _compile(lib, reward_factory):
    """Compile the single env's step kernel ``env_step`` (see :func:`kernel`).

    One function on purpose: ``env_step`` closes over this factory's locals (the C ``mj_step``, the task's compiled
    reward, the pointer casts), which numba freezes into the kernel as compile-time constants, so kernel and factory
    are written as one.
    """
    import ctypes

    import numba
    import numpy as np

    njit = numba.njit(nogil=True, cache=False)
    if reward_factory is None:
        def evaluate(qpos, qvel, a, p):  # pragma: no cover - runs compiled
            return 0.0, False, -1

        evaluate = njit(evaluate)
    else:
        evaluate = reward_factory(njit)
    step = lib.mj_step
    step.argtypes, step.restype = [ctypes.c_int64, ctypes.c_int64], None  # addresses as integers
    f64_at, i32_at, i64_at = _pointer_casts()

    @numba.njit(nogil=True, cache=False)
    def env_step(a_in, t, goal, obs, tab):  # pragma: no cover - runs compiled
        """One env step from the action to the reward (layout of ``tab`` below).

        One function on purpose: the compiled kernel is the whole step in one native call from Python (numba's
        dispatch costs per call and per argument, a sizeable part of a 10 us step), doing the Python step's operations
        in the same order so the two stay bit-identical.
        """
        # tab (int64, MujocoTaskEnv._k_tab): [the env's arrays (slots 0 .. TAB_RZ - 1: ctrl, qpos, qvel, the warning
        # counters (int32, stride tab[10]), fbuf (float64: ctrl half-range (nu), then the action the reward sees (nu),
        # written here), the task's reward parameters, last_warn (int32) addresses; nq, nv, n counters, stride, n
        # parameters), the randomizer's kernel_ptrs address (TAB_RZ; a table of zeros: randomization off), the
        # sensor-noise row (TAB_OI), nu (TAB_NU), then the layout (TAB_LAY: model address, data address,
        # frame_skip, n_joints, trig, qadr (n), dadr (n), obs source index (n_obs))]. The sensor-noise row -1: take
        # it from the randomizer's table (advancing it there), and first return status 2 without doing anything
        # when a noise chunk runs out at this step (the env draws it and calls again with the row). Returns (status
        # 0 / 1 diverged / 2 / 3 the action has the wrong length, reward, terminated, success -1 / 0 / 1) with the
        # reward of the task's compiled evaluate (0, False, -1 without one, or when diverged).
        nu = a_in.shape[0]
        if nu != tab[TAB_NU]:
            return 3, 0.0, False, -1
        rz = numba.carray(i64_at(tab[TAB_RZ]), (9,))
        ep = tab
        lay = tab[TAB_LAY:]
        oi = tab[TAB_OI]
        if oi < 0:
            if rz[1] > 0 and t % rz[1] == 0:
                return 2, 0.0, False, -1
            if rz[7] > 0:
                oi = rz[8]
                if oi == rz[7]:
                    return 2, 0.0, False, -1
                rz[8] = oi + 1
        mp, dp, fs, n, trig = lay[0], lay[1], lay[2], lay[3], lay[4]
        ctrl = numba.carray(f64_at(ep[0]), (nu,))
        qpos = numba.carray(f64_at(ep[1]), (ep[7],))
        qvel = numba.carray(f64_at(ep[2]), (ep[8],))
        nw, ws = ep[9], ep[10]
        warn = numba.carray(i32_at(ep[3]), (nw * ws,))
        fbuf = numba.carray(f64_at(ep[4]), (2 * nu,))
        rp = numba.carray(f64_at(ep[5]), (ep[11],))
        last_warn = numba.carray(i32_at(ep[6]), (nw,))
        # Action: noise row t % rows (rows 0: none), then latency (0: none), as Randomizer.process_action.
        rows = rz[1]
        noise = numba.carray(f64_at(rz[0]), (rows, nu))
        for i in range(nu):
            v = np.float64(a_in[i])
            if rows > 0:
                v += noise[t % rows, i]
            fbuf[nu + i] = v
        lat = rz[4]
        if lat > 0:
            L = rz[3]
            lat_buf = numba.carray(f64_at(rz[2]), (L, nu))
            for i in range(nu):
                lat_buf[t % L, i] = fbuf[nu + i]
            for i in range(nu):
                fbuf[nu + i] = lat_buf[(t - lat) % L, i] if t >= lat else 0.0
        for i in range(nu):
            ctrl[i] = fbuf[i] * fbuf[nu + i]
        for _ in range(fs):
            step(mp, dp)
        # Observation: element j is source[index[j]] of build_lists' source [q, cos q, sin q, qd, goal], with the
        # sensor noise row oi added to q and qd (rows 0: no noise).
        sn = rz[7] > 0
        qn = numba.carray(f64_at(rz[5]), (rz[7], n))
        qdn = numba.carray(f64_at(rz[6]), (rz[7], n))
        acc = np.float32(0.0)
        for j in range(obs.shape[0]):
            src = lay[5 + 2 * n + j]
            kind, jj = src // n, src % n
            if kind >= 4:
                v = goal[src - 4 * n]
            elif kind == 3:
                v = qvel[lay[5 + n + jj]]
                if sn:
                    v += qdn[oi, jj]
            else:
                v = qpos[lay[5 + jj]]
                if sn:
                    v += qn[oi, jj]
                if kind == 1:
                    v = np.cos(v) if trig else 0.0
                elif kind == 2:
                    v = np.sin(v) if trig else 0.0
            o = np.float32(v)
            obs[j] = o
            acc += o * o
        error = not np.isfinite(acc)
        for i in range(nw):
            w = warn[i * ws]
            if w != last_warn[i]:
                error = True
                last_warn[i] = w
        if error:
            return 1, 0.0, True, 0
        r, term, succ = evaluate(qpos, qvel, fbuf[nu:], rp)
        return 0, r, term, succ

    return env_step


def _compile_batch(lib, reward_factory):
    """Compile ``BatchedBlock``'s kernels: ``batch_range`` (envs ``lo .. hi - 1``), ``batch_step`` (all envs) and the
    threaded ones of :func:`robot_rl.envs.fast_threads.compile_threaded`.

    One function on purpose: the kernels close over this factory's locals (the C ``mj_step``, the task's compiled
    reward, the pointer casts), which numba freezes into them as compile-time constants, so kernels and factory are
    written as one.
    """
    import ctypes

    import numba
    import numpy as np

    njit = numba.njit(nogil=True, cache=False)
    if reward_factory is None:
        raise ValueError("the batched kernel needs the task's compiled reward terms (robot_rl.envs.task.RewardKernel)")
    evaluate = reward_factory(njit)
    step = lib.mj_step
    step.argtypes, step.restype = [ctypes.c_int64, ctypes.c_int64], None

    f64_at, i32_at, _ = _pointer_casts()

    @njit
    def batch_range(lo, hi, a, act_on, act_noise, off_a, lat_on, lat_buf, lat, ptrs, lay, half, noise, off_s, c,
                    sense, goals, rp, t, max_steps, returns, lengths, obs, rew, term, trunc, err, succ, final, ep_r,
                    ep_l, done, done2, last_warn):  # pragma: no cover - runs compiled
        """Step envs ``lo .. hi - 1`` of the batch (arguments below).

        One function on purpose: the compiled kernel steps a whole range of envs in one native call (the threaded
        batch runs one range per thread, without the GIL), doing the single env step's operations in the same order.
        """
        # Env e: a[e] the policy's action; act_noise [N, chunk, nu] each env's action-noise chunk, row
        # (c - off_a[e]) % chunk at global column c (envs with act_on[e]); lat_on: the latency shift register
        # lat_buf [N, R, nu] runs (slot p = the action of p steps ago; env e applies slot lat[e]), as
        # BatchedBlock._actions. ptrs[e] = [model, data, ctrl, qpos, qvel, warning counters (int32, stride 2), nq,
        # nv, n counters] addresses / sizes; noise [N, chunk, 2 n_joints] each env's sensor-noise chunk, row
        # (c - off_s[e]) % chunk (envs with sense[e]); goals [N, g]; lay / the observation and reward as the single
        # env's kernel. Then the episode bookkeeping of BatchedBlock._finish: t[e] += 1, truncation at max_steps,
        # returns / lengths, and for the envs whose episode ended (done) the final observation, episode return and
        # length (zeros elsewhere). Writes obs, rew, term, trunc, err, succ, final, ep_r, ep_l, done and done2
        # (a copy) and last_warn; returns the number of ended episodes (the envs to reset). Only envs lo..hi-1.
        fs, n, trig = lay[2], lay[3], lay[4]
        nu = a.shape[1]
        chunk_a, chunk_s = act_noise.shape[1], noise.shape[1]
        arow = np.empty(nu)
        n_done = 0
        for e in range(lo, hi):
            p = ptrs[e]
            ctrl = numba.carray(f64_at(p[2]), (nu,))
            qpos = numba.carray(f64_at(p[3]), (p[6],))
            qvel = numba.carray(f64_at(p[4]), (p[7],))
            warn = numba.carray(i32_at(p[5]), (2 * p[8],))
            ra = (c - off_a[e]) % chunk_a
            for i in range(nu):
                v = np.float64(a[e, i])
                if act_on[e]:
                    v += act_noise[e, ra, i]
                arow[i] = v
            if lat_on:
                for s in range(lat_buf.shape[1] - 1, 0, -1):
                    for i in range(nu):
                        lat_buf[e, s, i] = lat_buf[e, s - 1, i]
                for i in range(nu):
                    lat_buf[e, 0, i] = arow[i]
                    arow[i] = lat_buf[e, lat[e], i]
            for i in range(nu):
                ctrl[i] = half[i] * arow[i]
            for _ in range(fs):
                step(p[0], p[1])
            rs = (c - off_s[e]) % chunk_s
            acc = np.float32(0.0)
            for j in range(obs.shape[1]):
                src = lay[5 + 2 * n + j]
                kind, jj = src // n, src % n
                if kind >= 4:
                    v = goals[e, src - 4 * n]
                elif kind == 3:
                    v = qvel[lay[5 + n + jj]]
                    if sense[e]:
                        v += noise[e, rs, n + jj]
                else:
                    v = qpos[lay[5 + jj]]
                    if sense[e]:
                        v += noise[e, rs, jj]
                    if kind == 1:
                        v = np.cos(v) if trig else 0.0
                    elif kind == 2:
                        v = np.sin(v) if trig else 0.0
                o = np.float32(v)
                obs[e, j] = o
                acc += o * o
            error = not np.isfinite(acc)
            for i in range(p[8]):
                w = warn[2 * i]
                if w != last_warn[e, i]:
                    error = True
                    last_warn[e, i] = w
            err[e] = error
            if error:
                for j in range(obs.shape[1]):
                    if not np.isfinite(obs[e, j]):
                        obs[e, j] = 0.0
                r, tm, sc = 0.0, True, 0
            else:
                r, tm, sc = evaluate(qpos, qvel, arow, rp)
            rew[e], term[e], succ[e] = r, tm, sc > 0
            # Episode bookkeeping (BatchedBlock._finish).
            t[e] += 1
            tr = t[e] >= max_steps
            trunc[e] = tr
            returns[e] += r
            lengths[e] += 1
            d = tm or tr
            done[e] = done2[e] = d
            if d:
                for j in range(obs.shape[1]):
                    final[e, j] = obs[e, j]
                ep_r[e], ep_l[e] = returns[e], lengths[e]
                returns[e], lengths[e] = 0.0, 0
                n_done += 1
            else:
                for j in range(obs.shape[1]):
                    final[e, j] = 0.0
                ep_r[e], ep_l[e] = 0.0, 0
        return n_done

    @njit
    def batch_step(a, act_on, act_noise, off_a, lat_on, lat_buf, lat, ptrs, lay, half, noise, off_s, c, sense, goals,
                   rp, t, max_steps, returns, lengths, obs, rew, term, trunc, err, succ, final, ep_r, ep_l, done,
                   done2, last_warn):  # pragma: no cover - runs compiled
        return batch_range(0, a.shape[0], a, act_on, act_noise, off_a, lat_on, lat_buf, lat, ptrs, lay, half, noise,
                           off_s, c, sense, goals, rp, t, max_steps, returns, lengths, obs, rew, term, trunc, err,
                           succ, final, ep_r, ep_l, done, done2, last_warn)

    from robot_rl.envs.fast_threads import compile_threaded

    return BatchKernels(batch_step, *compile_threaded(njit, batch_range))


class BatchKernels(NamedTuple):
    """The compiled kernels of ``BatchedBlock``: ``step`` (the whole batch in the calling thread), and ``step_mt`` /
    ``worker`` / ``stop`` (the batch split over threads, :func:`robot_rl.envs.fast_threads.compile_threaded`; None
    where that is not supported).
    """

    step: Callable
    step_mt: Callable | None
    worker: Callable | None
    stop: Callable | None
