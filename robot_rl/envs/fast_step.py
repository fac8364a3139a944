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

    return BatchKernels(batch_step, *_compile_threaded(njit, batch_range))


class BatchKernels(NamedTuple):
    """The compiled kernels of ``BatchedBlock``: ``step`` (the whole batch in the calling thread), and ``step_mt`` /
    ``worker`` / ``stop`` (the batch split over threads, :func:`_compile_threaded`; None where that is not
    supported).
    """

    step: Callable
    step_mt: Callable | None
    worker: Callable | None
    stop: Callable | None


# Slots of a worker's row in the threaded batch's control array (int64 [W, CTL_WIDTH], one 128-byte row per worker
# so that the two sides' spinning reads do not share a cache line).
CTL_GEN, CTL_DONE, CTL_NDONE, CTL_SLEEP, CTL_STOP, CTL_COL, CTL_LAT, CTL_TS, CTL_SPIN_NS = 0, 1, 2, 3, 4, 5, 6, 8, 10
CTL_SLEEPS, CTL_WAIT_NS, CTL_MAIN_TS, CTL_WORK_NS = 11, 12, 13, 15  # statistics: steps that had to wake the worker,
# the caller's waits and the worker's stepping [ns]
CTL_WIDTH = 16
DONE_FAILED = -1  # CTL_DONE when the worker thread died (its Python wrapper writes it)
_SYS_FUTEX = {"x86_64": 202, "aarch64": 98}


def threads_unavailable_reason() -> str | None:
    """Why the threaded batch step cannot run on this platform (None when it can): it sleeps and wakes its worker
    threads with Linux futexes.
    """
    import platform

    if platform.system() != "Linux" or platform.machine() not in _SYS_FUTEX:
        return f"the threaded batch step needs Linux on x86_64 or aarch64 (futexes), not {platform.system()} " \
               f"{platform.machine()}"
    return None


def _sync_primitives():
    """Numba-callable atomics on raw addresses (``load(addr)``, ``store(addr, value)``: sequentially consistent
    int64), ``now_ns(timespec address)`` (CLOCK_MONOTONIC), ``sleep_on(addr, value)`` (a futex wait of at most
    0.1 s while the int64 at ``addr`` still has ``value`` in its low 32 bits), ``wake(addr)`` and ``pause()``
    (``sched_yield``).
    """
    import ctypes
    import ctypes.util
    import platform

    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic

    i64p = types.CPointer(types.int64)

    @intrinsic
    def load(typingctx, addr):  # pragma: no cover - compile-time
        def codegen(context, builder, signature, args):
            ptr = builder.inttoptr(args[0], context.get_value_type(i64p))
            return builder.load_atomic(ptr, "seq_cst", 8)

        return types.int64(types.int64), codegen

    @intrinsic
    def store(typingctx, addr, value):  # pragma: no cover - compile-time
        def codegen(context, builder, signature, args):
            ptr = builder.inttoptr(args[0], context.get_value_type(i64p))
            builder.store_atomic(args[1], ptr, "seq_cst", 8)
            return context.get_dummy_value()

        return types.void(types.int64, types.int64), codegen

    @intrinsic
    def relax(typingctx):  # pragma: no cover - compile-time
        # The spin-wait hint (x86 PAUSE, ARM YIELD): a spinning thread leaves the core's resources to its
        # hyperthread sibling (the other vCPU of a small VM may be one).
        def codegen(context, builder, signature, args):
            if platform.machine() == "x86_64":
                fn = builder.module.declare_intrinsic("llvm.x86.sse2.pause", fnty=ir.FunctionType(ir.VoidType(), []))
                builder.call(fn, [])
            else:
                fn = builder.module.declare_intrinsic("llvm.aarch64.hint",
                                                      fnty=ir.FunctionType(ir.VoidType(), [ir.IntType(32)]))
                builder.call(fn, [ir.Constant(ir.IntType(32), 1)])
            return context.get_dummy_value()

        return types.void(), codegen

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=False)
    syscall = libc.syscall
    syscall.argtypes, syscall.restype = [ctypes.c_long] * 6, ctypes.c_long
    clock = libc.clock_gettime
    clock.argtypes, clock.restype = [ctypes.c_int, ctypes.c_int64], ctypes.c_int
    yield_ = libc.sched_yield
    yield_.argtypes, yield_.restype = [], ctypes.c_int
    futex = _SYS_FUTEX[platform.machine()]
    wait_private, wake_private = 0 | 128, 1 | 128  # FUTEX_WAIT / FUTEX_WAKE with FUTEX_PRIVATE_FLAG
    import numba

    @numba.njit(nogil=True, cache=False)
    def now_ns(ts):  # pragma: no cover - runs compiled
        clock(1, ts)  # CLOCK_MONOTONIC into the timespec at address ts
        return load(ts) * 1_000_000_000 + load(ts + 8)

    @numba.njit(nogil=True, cache=False)
    def sleep_on(addr, value, ts):  # pragma: no cover - runs compiled
        store(ts, 0)
        store(ts + 8, 100_000_000)  # at most 0.1 s (the caller loops)
        syscall(futex, addr, wait_private, value & 0xFFFFFFFF, ts, 0)

    @numba.njit(nogil=True, cache=False)
    def wake(addr):  # pragma: no cover - runs compiled
        syscall(futex, addr, wake_private, 1, 0, 0)

    @numba.njit(nogil=True, cache=False)
    def pause():  # pragma: no cover - runs compiled
        yield_()

    return load, store, now_ns, sleep_on, wake, pause, relax


def _compile_threaded(njit, batch_range):
    """The batch step split over threads: ``step_mt`` (the calling thread's part, publishing the others' parts and
    waiting for them), ``worker`` (the loop a worker thread runs, nogil, until told to stop) and ``stop``; (None,
    None, None) where :func:`threads_unavailable_reason` says no.

    Protocol per worker row ``w`` of ``ctl`` (slots ``CTL_*``): the caller copies the actions (and goals) of the
    worker's envs into the persistent float64 buffers ``abuf`` / ``gbuf``, writes the chunk column and the latency
    switch, then stores a new generation in GEN (a sequentially consistent store: everything written before it is
    visible to the worker once it sees the generation) and, if the worker said it sleeps (SLEEP), wakes it with a
    futex. The worker spins on GEN for up to SPIN_NS, then sets SLEEP, looks at GEN once more and sleeps in a futex
    wait on GEN (the store-then-load on both sides means one of them always sees the other: no lost wake-up). It
    steps its envs ``bounds[w + 1] .. bounds[w + 2] - 1`` into the persistent shadow outputs ``sh_*``, stores the
    number of ended episodes in NDONE, then the generation in DONE. The caller steps envs ``0 .. bounds[1] - 1``
    into the fresh outputs, waits for every DONE (spinning, yielding the core after a while) and copies the
    workers' rows over. The per-env state arrays (step counters, returns, noise positions, latency registers,
    warning baselines) are shared: each thread writes only its own envs' rows.
    """
    if threads_unavailable_reason() is not None:
        return None, None, None
    import numpy as np

    load, store, now_ns, sleep_on, wake, pause, relax = _sync_primitives()

    @njit
    def step_mt(a, act_on, act_noise, off_a, lat_on, lat_buf, lat, ptrs, lay, half, noise, off_s, c, sense, goals,
                rp, t, max_steps, returns, lengths, obs, rew, term, trunc, err, succ, final, ep_r, ep_l, done, done2,
                last_warn, abuf, gbuf, sh, ctl, bounds):  # pragma: no cover - runs compiled
        # sh: the workers' outputs (sh_obs, sh_rew, sh_term, sh_trunc, sh_err, sh_succ, sh_final, sh_ep_r, sh_ep_l,
        # sh_done). Returns the number of ended episodes, or DONE_FAILED when a worker died.
        sh_obs, sh_rew, sh_term, sh_trunc, sh_err, sh_succ, sh_final, sh_ep_r, sh_ep_l, sh_done = sh
        n_env, nu = a.shape
        for e in range(bounds[1], n_env):
            for i in range(nu):
                abuf[e, i] = np.float64(a[e, i])
            for i in range(goals.shape[1]):
                gbuf[e, i] = goals[e, i]
        base = ctl.ctypes.data
        row = ctl.shape[1] * 8
        for w in range(ctl.shape[0]):
            ctl[w, CTL_COL] = c
            ctl[w, CTL_LAT] = lat_on
            at = base + w * row
            store(at + 8 * CTL_GEN, ctl[w, CTL_GEN] + 1)
            if load(at + 8 * CTL_SLEEP):
                wake(at + 8 * CTL_GEN)
        n_done = batch_range(0, bounds[1], a, act_on, act_noise, off_a, lat_on, lat_buf, lat, ptrs, lay, half, noise,
                             off_s, c, sense, goals, rp, t, max_steps, returns, lengths, obs, rew, term, trunc, err,
                             succ, final, ep_r, ep_l, done, done2, last_warn)
        for w in range(ctl.shape[0]):
            at = base + w * row
            g = ctl[w, CTL_GEN]
            t0 = now_ns(at + 8 * CTL_MAIN_TS)
            spins = 0
            while True:
                d = load(at + 8 * CTL_DONE)
                if d == g:
                    break
                if d == DONE_FAILED:
                    return DONE_FAILED
                spins += 1
                relax()
                if spins > 20000:  # the worker is late (asleep, or not scheduled): let it have this core
                    pause()
            ctl[w, CTL_WAIT_NS] += now_ns(at + 8 * CTL_MAIN_TS) - t0
            for e in range(bounds[w + 1], bounds[w + 2]):
                for j in range(obs.shape[1]):
                    obs[e, j] = sh_obs[e, j]
                    final[e, j] = sh_final[e, j]
                rew[e], term[e], trunc[e], err[e], succ[e] = sh_rew[e], sh_term[e], sh_trunc[e], sh_err[e], sh_succ[e]
                ep_r[e], ep_l[e], done[e], done2[e] = sh_ep_r[e], sh_ep_l[e], sh_done[e], sh_done[e]
            n_done += ctl[w, CTL_NDONE]
        return n_done

    @njit
    def worker(w, act_on, act_noise, off_a, lat_buf, lat, ptrs, lay, half, noise, off_s, sense, rp, t, max_steps,
               returns, lengths, last_warn, abuf, gbuf, sh, ctl, bounds):  # pragma: no cover - runs compiled
        sh_obs, sh_rew, sh_term, sh_trunc, sh_err, sh_succ, sh_final, sh_ep_r, sh_ep_l, sh_done = sh
        at = ctl.ctypes.data + w * ctl.shape[1] * 8
        gen, ts = at + 8 * CTL_GEN, at + 8 * CTL_TS
        seen = ctl[w, CTL_GEN]
        lo, hi = bounds[w + 1], bounds[w + 2]
        if load(at + 8 * CTL_STOP):  # (a warm-up call: compiles and returns)
            return
        while True:
            start = now_ns(ts)
            spins = 0
            idle = False  # True after a sleep that timed out: sleep again without spinning first
            while True:
                g = load(gen)
                if g != seen:
                    break
                spins += 1
                relax()
                if spins % 256 == 0 and (idle or now_ns(ts) - start > ctl[w, CTL_SPIN_NS]):
                    store(at + 8 * CTL_SLEEP, 1)
                    if load(gen) == seen:
                        sleep_on(gen, seen, ts)
                    store(at + 8 * CTL_SLEEP, 0)
                    idle = load(gen) == seen
                    if not idle:
                        ctl[w, CTL_SLEEPS] += 1  # a step had to wake this worker
            seen = g
            if load(at + 8 * CTL_STOP):
                return
            t0 = now_ns(ts)
            n = batch_range(lo, hi, abuf, act_on, act_noise, off_a, ctl[w, CTL_LAT] != 0, lat_buf, lat, ptrs, lay,
                            half, noise, off_s, ctl[w, CTL_COL], sense, gbuf, rp, t, max_steps, returns, lengths,
                            sh_obs, sh_rew, sh_term, sh_trunc, sh_err, sh_succ, sh_final, sh_ep_r, sh_ep_l, sh_done,
                            sh_done, last_warn)
            ctl[w, CTL_NDONE] = n
            ctl[w, CTL_WORK_NS] += now_ns(ts) - t0
            store(at + 8 * CTL_DONE, g)

    @njit
    def stop(ctl):  # pragma: no cover - runs compiled
        # Tell every worker of ctl to return (and wake it).
        base = ctl.ctypes.data
        for w in range(ctl.shape[0]):
            at = base + w * ctl.shape[1] * 8
            store(at + 8 * CTL_STOP, 1)
            store(at + 8 * CTL_GEN, ctl[w, CTL_GEN] + 1)
            wake(at + 8 * CTL_GEN)

    return step_mt, worker, stop
