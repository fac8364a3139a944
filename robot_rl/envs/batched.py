"""Batched stepping of N copies of one MuJoCo task in one process (the vector env's ``"batched"`` backend).

A Python loop over N single envs pays the env's Python work (action noise and latency, observation, sensor noise,
reward, checks) N times per step, about twice the physics of a small model. ``BatchedBlock`` keeps the N real envs
(their models, data, random generators and randomizers) and steps them together: MuJoCo runs per env (``mj_step``
on each env's own ``MjData``), action noise and latency, state reads, sensor noise, observations and checks are
numpy operations over the whole batch, and so is the reward (the task's declared terms on ``(N,)`` arrays,
``MujocoTaskEnv._evaluate_batch``). Observations, terminations, truncations, success flags, physics errors and
autoresets are bit-identical to stepping the single envs: the same random draws from each env's own generator in
the same order (each env's randomizer draws its noise chunks; the batch keeps copies arranged so that every env
reads the same column at a step), the same IEEE operations, and ``math`` (not numpy's SIMD kernels, which may differ
in the last bit) for the observation's cos/sin (``rewards.elementwise``). Rewards are the same term functions on
arrays, so numpy's cos/exp/arctan2 may make them differ from the single env's in the last bits (tests hold them to
rtol 1e-12). Resets (including same-step autoresets), randomization
sampling and per-step randomization terms (interval resampling, pushes) run through the single env's own code.

Where the envs have the compiled step (``robot_rl.envs.fast_step``: the default for the cart-poles and the pendulum)
the block runs the compiled batch kernel instead of the numpy pass: one numba call does, per env, the action noise
and latency, the ctrl write, ``mj_step``, sensor noise, observation, divergence check and the task's compiled reward
(the single env's compiled step, rewards included, bit for bit) and the episode bookkeeping (truncation, returns,
lengths, final observations); the random draws (noise chunks, interval terms, pushes) and the autoresets stay in
Python as above. ``compiled_step=False`` keeps the numpy pass.

A task can run batched when its terms read only joint state, actions and parameters (``TaskSpec.scalar``), its env
keeps the base class's step, observation and packaging (no ``_before_physics`` hook) and its observation layout has
no forward-kinematics terms (``batch_support`` says why not otherwise): the cart-pole tasks and the pendulum.

With ``num_threads > 1`` (``make_vec(..., num_threads=k)``) the compiled batch step runs on k threads
(``robot_rl.envs.batched_threads``), with the results of one thread, bit for bit.

The per-step state (``step_count``, the sensor-noise position, the action-latency ring, the divergence-warning
baseline) lives in the block while it steps and is written back to the envs before ``get_attr`` / ``call`` /
``set_attr``; after ``call`` and ``set_attr`` (which may step or reset an env, or switch its randomization) the
block reads every env's state again.
"""

from __future__ import annotations

import math

import mujoco
import numpy as np

from robot_rl.envs import fast_step
from robot_rl.envs.base import MujocoTaskEnv
from robot_rl.envs.batched_threads import BatchThreadsMixin
from robot_rl.envs.randomization import _CHUNK

_F32, _F64, _I64, _BOOL = (np.dtype(t) for t in (np.float32, np.float64, np.int64, np.bool_))


_HOOKS = ("step", "_observe", "_before_physics", "_package_obs")


def batch_support(env) -> str | None:
    """None if ``env``'s task can run in ``BatchedBlock``, else the reason it cannot (for error messages)."""
    u = env.unwrapped
    cls = type(u)
    if not isinstance(u, MujocoTaskEnv):
        return f"{cls.__name__} is not a robot_rl MuJoCo task (MujocoTaskEnv)"
    if not u.task.scalar:
        return f"{u.name} has no batched reward (its terms read sites or the goal)"
    for hook in _HOOKS:
        if getattr(cls, hook) is not getattr(MujocoTaskEnv, hook):
            return f"{cls.__name__} overrides {hook}"
    if not u.observation_builder.batchable:
        return f"{cls.__name__}'s observation uses forward kinematics (site terms)"
    return None


class BatchedBlock(BatchThreadsMixin):
    """Envs ``indices`` of a vector env stepped as one batch with same-step autoreset (see module docstring).

    Same interface as ``vector._Block``: ``reset(seeds)`` and ``step()`` read ``buf.actions`` and write the result
    rows of ``buf`` (shape ``(len(indices), ...)``); ``step_arrays(actions)`` returns fresh arrays instead.
    """

    def __init__(self, env_id: str, indices: range, seed: int | None, randomization, kwargs: dict, buf,
                 num_threads: int = 1):
        from robot_rl.envs import make

        if int(num_threads) != num_threads or num_threads < 1:
            raise ValueError(f"num_threads must be an integer >= 1, got {num_threads!r}")

        self.envs = [make(env_id, randomization=randomization, seed=None if seed is None else seed + i, **kwargs)
                     for i in indices]
        self.u = [e.unwrapped for e in self.envs]
        reason = batch_support(self.envs[0])
        if reason is not None:
            raise ValueError(f"vector env backend 'batched' cannot run {env_id!r}: {reason}; use backend='sync'")
        u0 = self.u[0]
        n, nu, nq, nv = len(self.envs), u0.model.nu, u0.model.nq, u0.model.nv
        self.n, self.buf = n, buf
        self._task = u0
        self._models = [u.model for u in self.u]
        self._datas = [u.data for u in self.u]
        self._ctrl_v = [u.data.ctrl for u in self.u]
        # One np.concatenate reads every env's qpos, qvel and divergence-warning counters (exact as float64).
        # Env-major ([qpos_0, qvel_0, qpos_1, ...]) so the state reshapes to (n, nq + nv) rows.
        self._state_v = [v for u in self.u for v in (u.data.qpos, u.data.qvel)] + [u._warnings for u in self.u]
        self._cut = n * (nq + nv)
        self._nq, self._nv = nq, nv
        self._skip = u0.frame_skip
        self._nu1 = nu == 1
        self._qadr, self._dadr = u0._qadr, u0._dadr
        self._all_joints = np.array_equal(self._qadr, np.arange(nq)) and np.array_equal(self._dadr, np.arange(nv))
        self._builder = u0.observation_builder
        self._max_steps = u0.max_episode_steps
        self._mid, self._half, self._sym = u0._ctrl_mid, u0._ctrl_half, u0._ctrl_symmetric
        self.returns = np.zeros(n)
        self.lengths = np.zeros(n, dtype=np.int64)
        self._t = np.zeros(n, dtype=np.int64)
        self._ar = np.arange(n)
        self._last_warn = np.zeros((n, len(u0._warnings)))  # counters at the last check, float64
        self._last_warn_b = self._last_warn.tobytes()
        nj = len(self._qadr)
        rz = u0.randomizer
        lat = rz.config.action_latency if rz is not None else None
        # White-noise chunks (action; sensor [position | velocity]) of every env, copies of the envs' own chunks (the
        # source of truth for _import): at global step g, env i reads row (g - offset_i) % _CHUNK.
        self._g = 0
        self._act_noise = np.zeros((n, _CHUNK, nu))
        self._noise = np.zeros((n, _CHUNK, 2 * nj))
        self._off_a = np.zeros(n, dtype=np.int64)
        self._off_s = np.zeros(n, dtype=np.int64)
        # Action latency: one shift register of R slots per env (slot p holds the action of p steps ago; an env with
        # latency L reads slot L, L = 0 the action just written). Each env keeps its own ring of L + 1 slots; the
        # two are converted in _import / _export.
        self._lat = np.zeros((n, 1 + (max(lat.steps) if lat is not None else 0), nu))
        self._latency = np.zeros(n, dtype=np.int64)
        self._on = {k: np.zeros(n, dtype=bool) for k in ("noise", "latency", "sense", "per_step")}
        for i in range(n):
            self._import(i)
        self._refresh()
        self._threads: list = []
        self._kernel = self._build_kernel()
        self.num_threads = 1
        if num_threads > 1:
            self._start_threads(min(int(num_threads), n))

    def _build_kernel(self):
        """The compiled batch kernel (``robot_rl.envs.fast_step``) when the task has a compiled step and reward and
        numba builds it, after a warm-up step of env 0 that is undone; else None (numpy path).
        """
        u0 = self.u[0]
        factory = u0._reward_kernel_factory
        if not u0.compiled_step or factory is None or u0._warnings.strides != (8,):
            return None
        kernels = fast_step.kernel(factory, batch=True)
        if kernels is None:
            return None
        self._kernels = kernels
        k = kernels.step
        self._max_steps = int(self._max_steps)
        self._ptrs = np.array([[u.model._address, u.data._address, u.data.ctrl.ctypes.data, u.data.qpos.ctypes.data,
                                u.data.qvel.ctypes.data, u._warnings.ctypes.data, u.model.nq, u.model.nv,
                                len(u._warnings)] for u in self.u], dtype=np.int64)
        self._lay, self._rp = u0._k_lay, u0._k_rp
        self._n_obs = u0._n_obs
        self._obs_shape = (self.n, self._n_obs)
        self._no_goals = np.zeros((self.n, 0))
        z, nu = np.zeros, u0.model.nu
        goals = self._no_goals[:1] if not self._builder.goal_dim else z((1, self._builder.goal_dim))

        def call():
            o, b = z((1, self._n_obs), np.float32), z(1, bool)
            k(z((1, nu), np.float32), b, self._act_noise[:1].copy(), self._off_a[:1], False, self._lat[:1].copy(),
              self._latency[:1], self._ptrs[:1], self._lay, self._half, self._noise[:1], self._off_s[:1], 0, b,
              goals, self._rp, self._t[:1].copy(), self._max_steps, z(1), z(1, np.int64), o, z(1), b, b, b, b, o,
              z(1), z(1, np.int64), b, b, self._last_warn[:1].copy())

        if not fast_step.warm_up(u0.model, u0.data, call, f"batched {u0.name}: the compiled batch step"):
            k = None
        return k

    # ------------------------------------------------------------------ env <-> block state
    def _import(self, i: int) -> None:
        """Read env ``i``'s per-step state (step counter, noise chunks and positions, latency ring, switches)."""
        u = self.u[i]
        t = self._t[i] = u._t
        was_reset = hasattr(u, "_last_warn")  # an env made without a seed has no episode state until reset
        last = u._last_warn if was_reset else u._warnings.tobytes()
        self._last_warn[i] = np.frombuffer(last, dtype=u._warnings.dtype)
        self._last_warn_b = self._last_warn.tobytes()
        rz = u.randomizer
        on = rz is not None and u.randomization_enabled and was_reset
        self._on["noise"][i] = noise = on and rz._act_noise is not None
        if noise:  # the next step uses row t % _CHUNK (drawing a new chunk first when that is 0)
            self._off_a[i] = (self._g - t) % _CHUNK
            self._act_noise[i] = rz._act_noise
        self._on["latency"][i] = latency = on and rz._latency > 0
        self._latency[i] = lat = rz._latency if latency else 0
        if latency:
            if lat >= self._lat.shape[1]:  # sized from the profile's largest latency; scale <= 1 only shrinks it
                raise RuntimeError(f"env {i}: action latency {lat} steps exceeds the profile's maximum "
                                   f"{self._lat.shape[1] - 1}")
            self._lat[i] = 0.0
            for s in range(max(0, t - lat), t):  # the actions still to be applied
                self._lat[i, t - 1 - s] = rz._lat_buf[s % (lat + 1)]
        self._on["sense"][i] = sense = on and rz.acts_on_sensors
        if sense:  # the next observation uses row obs_i (after drawing a new chunk when obs_i is _CHUNK)
            if rz._obs_i == 0:  # a chunk drawn but no observation taken: not a state the env API leaves
                raise RuntimeError(f"env {i}: sensor-noise chunk drawn without an observation (obs index 0)")
            self._off_s[i] = (self._g - rz._obs_i) % _CHUNK
            self._load_sensor_noise(i)
        self._on["per_step"][i] = on and rz.acts_per_step

    def _load_sensor_noise(self, i: int) -> None:
        rz, nj = self.u[i].randomizer, len(self._qadr)
        self._noise[i, :, :nj] = rz._q_noise
        self._noise[i, :, nj:] = rz._qd_noise

    def _refresh(self) -> None:
        """Rows of the envs each per-step term applies to (kinds that apply to no env are left out); ``_sel`` is
        the same as a slice when it is every env (basic indexing, no copies).
        """
        self._rows = {k: np.flatnonzero(v) for k, v in self._on.items() if v.any()}
        self._sel = {k: slice(None) if len(r) == self.n else r for k, r in self._rows.items()}
        # Column -> envs that draw a new chunk when the batch reaches it.
        self._refill_a, self._refill_s = {}, {}
        for refill, kind, off in ((self._refill_a, "noise", self._off_a), (self._refill_s, "sense", self._off_s)):
            for i in self._rows[kind].tolist() if kind in self._rows else ():
                refill.setdefault(int(off[i]), []).append(i)

    def _export(self) -> None:
        """Write the per-step state back to the envs (before anyone else looks at or steps them)."""
        for i, u in enumerate(self.u):
            t = u._t = int(self._t[i])
            u._last_warn = self._last_warn[i].astype(u._warnings.dtype).tobytes()
            rz = u.randomizer
            if self._on["sense"][i]:
                rz._obs_i = (self._g - int(self._off_s[i]) - 1) % _CHUNK + 1
            if self._on["latency"][i]:
                lat = int(self._latency[i])
                for s in range(max(0, t - lat), t):
                    rz._lat_buf[s % (lat + 1)] = self._lat[i, t - 1 - s]

    def _import_all(self) -> None:
        for i in range(self.n):
            self._import(i)
        self._refresh()

    # ------------------------------------------------------------------ stepping
    def reset(self, seeds: list) -> None:
        b = self.buf
        obs = []
        for i, (env, s) in enumerate(zip(self.envs, seeds)):
            o, info = env.reset(seed=s)
            obs.append(o)
            b.succ[i] = info.get("is_success", False)
            self._import(i)
        self._refresh()
        np.stack(obs, out=b.obs[""])
        b.err[:] = False
        self.returns[:] = 0.0
        self.lengths[:] = 0

    def _action_draws(self, nu: int) -> None:
        """The random draws before the physics, per env as the single env makes them: new action-noise chunks
        (the envs whose chunk column the batch reaches), then interval resampling and pushes.
        """
        rows = self._rows
        if "noise" in rows:
            for i in self._refill_a.get(self._g % _CHUNK, ()):  # drawn as the single env draws it (step 0, 256, ...)
                rz = self.u[i].randomizer
                rz._refill_action_noise(self.u[i]._np_random)
                self._act_noise[i] = rz._act_noise
        if "per_step" in rows:
            t = self._t
            for i in rows["per_step"].tolist():
                u = self.u[i]
                u._rand_info = u.randomizer.before_step(int(t[i]), u._np_random, u._rand_info)

    def _actions(self, actions: np.ndarray) -> np.ndarray:
        """Normalized actions after each env's action noise, per-step randomization and latency, ``(n, nu)``."""
        rows, sel = self._rows, self._sel
        a = None if len(rows.get("noise", ())) == self.n else actions.astype(np.float64)
        self._action_draws(actions.shape[1])
        if "noise" in rows:
            c = self._g % _CHUNK
            r = rows["noise"]
            noise = self._act_noise[r, (c - self._off_a[r]) % _CHUNK]
            if a is None:  # every env adds noise: float32 + float64 -> a fresh float64 array
                a = actions + noise
            else:
                a[sel["noise"]] += noise
        if "latency" in rows:
            buf = self._lat
            buf[:, 1:] = buf[:, :-1]  # shift register: position p holds the action of p steps ago
            buf[:, 0] = a
            a = buf[self._ar, self._latency]  # zeros before the episode start (the register starts zeroed)
        return a

    def _measure(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """True ``qpos`` ``(n, nq)``, ``qvel`` ``(n, nv)``, the sensed joint positions / velocities and the warning
        counters (float64, ``n * 4``).
        """
        flat = np.concatenate(self._state_v)
        nq, cut = self._nq, self._cut
        state, warn = flat[:cut].reshape(self.n, -1), flat[cut:]
        qpos, qvel = state[:, :nq], state[:, nq:]
        sense = "sense" in self._rows
        if sense:
            r, sl = self._rows["sense"], self._sel["sense"]
            c = self._g % _CHUNK
            for i in self._refill_s.get(c, ()):  # a new chunk (the env's observation index reached _CHUNK)
                self.u[i].randomizer._refill_sensor_noise(self.u[i]._np_random)
                self._load_sensor_noise(i)
            noise = self._noise[r, (c - self._off_s[r]) % _CHUNK]
            if self._all_joints and len(r) == self.n:  # every env senses, measured joints = all coordinates
                sensed = state + noise
                return qpos, qvel, sensed[:, :nq], sensed[:, nq:], warn
        q, qd = qpos[:, self._qadr], qvel[:, self._dadr]
        if sense:
            nj = len(self._qadr)
            q[sl] += noise[:, :nj]
            qd[sl] += noise[:, nj:]
        return qpos, qvel, q, qd, warn

    def step_arrays(self, actions: np.ndarray) -> tuple:
        """Step every env with ``actions`` ``(n, nu)``; returns fresh arrays ``(obs, reward, terminated, truncated,
        physics_error, is_success, final_obs, episode_return, episode_length, done, done)`` (done: terminated or
        truncated, twice: two arrays), each with n rows.
        """
        if self._kernel is not None:
            return self._step_compiled(actions)
        a = self._actions(actions)
        ctrl = self._half * a if self._sym else self._mid + self._half * a
        mj_step, skip = mujoco.mj_step, self._skip
        if self._nu1:  # one actuator: a float per env (cheaper than an array copy)
            for m, d, c, v in zip(self._models, self._datas, self._ctrl_v, ctrl.ravel().tolist()):
                c[0] = v
                mj_step(m, d, skip)
        else:
            for m, d, c, row in zip(self._models, self._datas, self._ctrl_v, ctrl):
                c[:] = row
                mj_step(m, d, skip)
        qpos, qvel, q, qd, warn = self._measure()
        self._g += 1  # (before the autoresets below: their envs start at the next global step)
        obs = self._builder._build_batch(q, qd, np.array([u._goal for u in self.u]) if self._builder.goal_dim else None)
        # As the single env: a divergence-warning counter moved, or the float32 obs . obs is not finite.
        changed = warn.tobytes() != self._last_warn_b
        flat = obs.ravel()
        if not changed and math.isfinite(flat.dot(flat)):  # one dot product: no row diverged (the usual case)
            rew, term, succ = self._task._evaluate_batch(qpos, qvel, a)
            err = None
        else:
            with np.errstate(all="ignore"):  # numpy rewards of a diverged (inf / NaN) row; replaced below
                rew, term, succ = self._task._evaluate_batch(qpos, qvel, a)
            err = np.array([not math.isfinite(o.dot(o)) for o in obs])
            if changed:
                warn = warn.reshape(self._last_warn.shape)
                err |= (warn != self._last_warn).any(axis=1)
                self._last_warn, self._last_warn_b = warn, warn.tobytes()
            obs[err] = np.nan_to_num(obs[err], nan=0.0, posinf=0.0, neginf=0.0)
            rew = np.where(err, 0.0, rew)
            term = term | err
            if succ is not None:
                succ = succ & ~err
        if err is None:
            err = np.zeros(self.n, dtype=bool)
        if succ is None:
            succ = np.zeros(self.n, dtype=bool)
        return self._finish(obs, rew, term, err, succ)

    def _step_compiled(self, actions: np.ndarray) -> tuple:
        """``step_arrays`` with action noise and latency, ctrl, physics, sensor noise, observations, divergence
        checks, the task's compiled reward and the episode bookkeeping of every env in one numba call (the single
        env's compiled step, bit for bit); the random draws and the autoresets stay here, in the single env's order.
        """
        n = self.n
        self._action_draws(actions.shape[1])
        c = self._g % _CHUNK
        if "sense" in self._rows:
            for i in self._refill_s.get(c, ()):  # a new chunk (the env's observation index reached _CHUNK)
                self.u[i].randomizer._refill_sensor_noise(self.u[i]._np_random)
                self._load_sensor_noise(i)
        e, f32, f64, b = np.empty, _F32, _F64, _BOOL  # (dtype objects: numpy converts a type on every call)
        om = self._obs_shape
        obs, final = e(om, f32), e(om, f32)
        rew, term, trunc, err, succ, ep_r, ep_l, done, done2 = (e(n, f64), e(n, b), e(n, b), e(n, b), e(n, b),
                                                                e(n, f64), e(n, _I64), e(n, b), e(n, b))
        goals = np.array([u._goal for u in self.u]) if self._builder.goal_dim else self._no_goals
        on = self._on
        if self._threads:
            n_done = self._kernels.step_mt(
                actions, on["noise"], self._act_noise, self._off_a, "latency" in self._rows, self._lat, self._latency,
                self._ptrs, self._lay, self._half, self._noise, self._off_s, c, on["sense"], goals, self._rp, self._t,
                self._max_steps, self.returns, self.lengths, obs, rew, term, trunc, err, succ, final, ep_r, ep_l, done,
                done2, self._last_warn, self._abuf, self._gbuf, self._sh, self._ctl, self._bounds)
            if n_done < 0:
                self._threads = []  # (dead)
                raise RuntimeError(f"a batch worker thread failed: {self._failures[0] if self._failures else '?'}")
        else:
            n_done = self._kernel(actions, on["noise"], self._act_noise, self._off_a, "latency" in self._rows,
                                  self._lat, self._latency, self._ptrs, self._lay, self._half, self._noise,
                                  self._off_s, c, on["sense"], goals, self._rp, self._t, self._max_steps, self.returns,
                                  self.lengths, obs, rew, term, trunc, err, succ, final, ep_r, ep_l, done, done2,
                                  self._last_warn)
        self._g += 1  # (before the autoresets: their envs start at the next global step)
        if n_done:
            self._autoreset(obs, np.flatnonzero(done).tolist())
        return obs, rew, term, trunc, err, succ, final, ep_r, ep_l, done, done2

    def _finish(self, obs, rew, term, err, succ) -> tuple:
        """Truncation, episode statistics and same-step autoresets; the ``step_arrays`` result (numpy pass)."""
        self._t += 1
        trunc = self._t >= self._max_steps
        self.returns += rew
        self.lengths += 1
        done = term | trunc
        final = np.zeros(obs.shape, dtype=obs.dtype)
        ep_r, ep_l = np.zeros(self.n), np.zeros(self.n, dtype=np.int64)
        if done.any():
            idx = np.flatnonzero(done)
            final[idx] = obs[idx]
            ep_r[idx], ep_l[idx] = self.returns[idx], self.lengths[idx]
            self.returns[idx], self.lengths[idx] = 0.0, 0
            self._autoreset(obs, idx.tolist())
        return obs, rew, term, trunc, err, succ, final, ep_r, ep_l, done, done.copy()

    def _autoreset(self, obs: np.ndarray, idx: list) -> None:
        """Reset envs ``idx`` (same-step autoreset: their reset observations go into ``obs``)."""
        for i in idx:
            obs[i], _ = self.envs[i].reset()
            self._import(i)
        self._refresh()

    def step(self) -> None:
        """``step_arrays(buf.actions)`` written into the result buffer rows (the process backend's workers)."""
        b = self.buf
        (b.obs[""][:], b.rew[:], b.term[:], b.trunc[:], b.err[:], b.succ[:], b.final_obs[""][:], b.ep_r[:],
         b.ep_l[:]) = self.step_arrays(b.actions)[:9]

    # ------------------------------------------------------------------ attributes
    def get_attr(self, name: str) -> list:
        self._export()
        return [getattr(u, name) for u in self.u]

    def call(self, name: str, args: tuple, kwargs: dict) -> list:
        self._export()
        out = []
        try:
            for u in self.u:
                attr = getattr(u, name)
                out.append(attr(*args, **kwargs) if callable(attr) else attr)
        finally:
            self._import_all()
        return out

    def set_attr(self, name: str, values: list) -> None:
        self._export()
        try:
            for u, v in zip(self.u, values):
                setattr(u, name, v)
        finally:
            self._import_all()

    def close(self) -> None:
        self._stop_threads()
        for env in self.envs:
            env.close()
