"""Apply a ``RandomizationConfig`` to a MuJoCo model/data, relative to remembered nominal values.

``Randomizer`` is built once per env. ``restore_nominal()`` writes back every parameter it may touch (exactly the
arrays copied at construction) and re-derives the model constants (``mj_setConst`` on a scratch data, so the
simulation state is untouched); ``on_reset(rng)`` samples the per-episode values and returns them as a flat dict
(``"<term>/<element>": value``). All randomness comes from the ``rng`` passed in (the env's ``np_random``), so a seed
reproduces every sample. ``scale`` (the curriculum factor in [0, 1]) shrinks every range toward "no
randomization": a scale range ``[lo, hi]`` becomes ``[1 + f (lo - 1), 1 + f (hi - 1)]``, offsets, noise levels, push
magnitudes and latencies are multiplied by ``f``. The model terms are sampled and written by
``robot_rl.envs.randomization_sampler``.
"""

from __future__ import annotations

import operator
import re

import mujoco
import numpy as np

from robot_rl.envs.randomization_config import RandomizationConfig, load_randomization
from robot_rl.envs.randomization_sampler import _MODEL_TERMS, _Sampler

_TERM_ORDER = ("body_mass", "body_inertia", "com_offset", "friction", "joint_damping", "armature", "frictionloss",
               "actuator_gain")  # sampled at reset in this order
_CHUNK = 256  # steps of white noise drawn at once
_JOINT_DOFS = {int(mujoco.mjtJoint.mjJNT_FREE): 6, int(mujoco.mjtJoint.mjJNT_BALL): 3}
_ONE_DOF = (int(mujoco.mjtJoint.mjJNT_SLIDE), int(mujoco.mjtJoint.mjJNT_HINGE))
_NOMINAL_ARRAYS = ("body_mass", "body_inertia", "body_ipos", "geom_friction", "dof_damping", "dof_armature",
                   "dof_frictionloss", "actuator_gainprm", "actuator_biasprm")


def _names(model, objtype, count: int) -> list[str]:
    return [mujoco.mj_id2name(model, objtype, i) or f"{objtype.name[6:].lower()}{i}" for i in range(count)]


def match(model, term: str, objtype, pattern: str) -> tuple[np.ndarray, list[str]]:
    """Indices and names of elements of ``objtype`` matching ``pattern`` ("all" or a fullmatch regex).

    Bodies exclude the world body and massless bodies. Raises ``ValueError`` naming the term and the available
    names if none match.
    """
    count = {mujoco.mjtObj.mjOBJ_BODY: model.nbody, mujoco.mjtObj.mjOBJ_GEOM: model.ngeom,
             mujoco.mjtObj.mjOBJ_JOINT: model.njnt, mujoco.mjtObj.mjOBJ_ACTUATOR: model.nu}[objtype]
    names = _names(model, objtype, count)
    start = 1 if objtype == mujoco.mjtObj.mjOBJ_BODY else 0
    if pattern == "all":
        idx = list(range(start, count))
    else:
        try:
            rx = re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"{term}.targets: invalid regex {pattern!r}: {exc}") from None
        idx = [i for i in range(start, count) if rx.fullmatch(names[i])]
    if not idx and count > start:
        raise ValueError(f"{term}.targets: {pattern!r} matches none of {names[start:]}")
    if objtype == mujoco.mjtObj.mjOBJ_BODY:
        # Massless bodies (mocap targets, frames) have no dynamics to randomize and must stay massless.
        idx = [i for i in idx if model.body_mass[i] > 0]
    return np.asarray(idx, dtype=np.intp), [names[i] for i in idx]


class Randomizer:
    """Samples and applies one randomization profile to one env's model/data (see module docstring)."""

    def __init__(self, config: RandomizationConfig, model, data, profile=None):
        self.config = config
        self.model, self.data = model, data
        self._scratch = mujoco.MjData(model)
        self.scale = 1.0
        self._nominal = {k: getattr(model, k).copy() for k in _NOMINAL_ARRAYS}
        self._restore = [(getattr(model, k), v) for k, v in self._nominal.items()]  # (model array, nominal copy)
        self._dirty = False
        # Per-body factors of the current sample: body_inertia = nominal * mass_scale * inertia_scale + offset.
        self._mass_scale = np.ones(model.nbody)
        self._inertia_scale = np.ones(model.nbody)
        self._inertia_offset = np.zeros(model.nbody)
        # Resolve targets once: term -> (element indices into the model array, element names).
        self._targets: dict[str, tuple[np.ndarray, list[str]]] = {}
        for term, (objtype, _, _, _) in _MODEL_TERMS.items():
            cfg = getattr(config, term)
            if cfg is None:
                continue
            idx, names = match(model, term, objtype, cfg.targets)
            if objtype == mujoco.mjtObj.mjOBJ_JOINT:  # joints -> their dofs
                dofs, dnames = [], []
                for j, n in zip(idx, names):
                    ndof = _JOINT_DOFS.get(int(model.jnt_type[j]), 1)
                    for k in range(ndof):
                        dofs.append(model.jnt_dofadr[j] + k)
                        dnames.append(n if ndof == 1 else f"{n}[{k}]")
                idx, names = np.asarray(dofs, dtype=np.intp), dnames
            self._targets[term] = (idx, names)
        if config.com_offset is not None:
            idx, _ = self._targets["com_offset"] = match(model, "com_offset", mujoco.mjtObj.mjOBJ_BODY,
                                                         config.com_offset.targets)
            # The compiler marks bodies whose inertial frame equals the body frame ("sameframe", "simple") and
            # skips that transform; a shifted center of mass breaks this, so these bodies take the general path
            # (numerically identical at zero offset, slightly slower).
            model.body_sameframe[idx] = 0
            model.body_simple[idx] = 0
            for b in idx:
                model.dof_simplenum[model.body_dofadr[b]:model.body_dofadr[b] + model.body_dofnum[b]] = 0
        if config.push is not None:
            self._targets["push"] = match(model, "push", mujoco.mjtObj.mjOBJ_BODY, config.push.targets)
        # Sensor channels: profile joints (positions, velocities) or, without a profile, the flat observation.
        self.joint_names = tuple(profile.joint_names) if profile is not None else None
        # Terms sampled at every reset (in this order: the random stream) and (term, every k steps) resampled at
        # intervals.
        self._reset_terms = tuple(t for t in _TERM_ORDER if getattr(config, t) is not None)
        self._interval_terms = [(t, getattr(config, t).interval_steps) for t in (*_MODEL_TERMS, "com_offset")
                                if getattr(config, t) is not None and getattr(config, t).mode == "interval"]
        self._samplers: dict[tuple, _Sampler] = {}  # terms -> their sampler, built on first use
        sc = model.jnt_type
        self._init_qadr = np.asarray([model.jnt_qposadr[j] for j in range(model.njnt)
                                      if int(sc[j]) in _ONE_DOF],
                                     dtype=np.intp)
        # Noise chunks and the latency ring live in buffers allocated once (draws fill them in place), so the compiled
        # env step (robot_rl.envs.fast_step) reads them at fixed addresses: kernel_ptrs = [action-noise chunk, its
        # rows (0: none), latency ring, its rows, latency, sensor position noise, sensor velocity noise, their rows
        # (0: none), the next sensor-noise row (_obs_i: the compiled step advances it)].
        nu = model.nu
        max_latency = config.action_latency.steps[1] if config.action_latency is not None else 0
        self._act_buf = np.zeros((_CHUNK, nu))
        self._lat_store = np.zeros((max_latency + 1, nu))
        nj = len(self.joint_names) if self.joint_names is not None else 0
        self._q_noise, self._qd_noise = np.zeros((_CHUNK, nj)), np.zeros((_CHUNK, nj))
        self.kernel_ptrs = np.array([self._act_buf.ctypes.data, 0, self._lat_store.ctypes.data, 1, 0,
                                     self._q_noise.ctypes.data, self._qd_noise.ctypes.data, 0, 0], dtype=np.int64)
        self._set_latency(0)
        self._act_noise = None
        self._obs_i = 0
        # Flags read by the env every step, so terms that are off cost nothing.
        self.acts_on_action = config.action_latency is not None or (
            config.action_noise is not None and config.action_noise.std > 0)
        self.acts_on_sensors = config.observation_noise is not None
        self.acts_per_step = bool(self._interval_terms) or config.push is not None
        self._bias_q = self._bias_qd = 0.0
        self._next_push = self._push_end = -1

    @classmethod
    def from_spec(cls, spec, model, data, profile=None) -> Randomizer | None:
        cfg = load_randomization(spec)
        return None if cfg is None else cls(cfg, model, data, profile)

    # ------------------------------------------------------------------ model parameters
    def restore_nominal(self) -> None:
        """Write back every nominal array; re-derive constants if anything had changed."""
        m = self.model
        for arr, v in self._restore:
            arr[...] = v
        self._mass_scale.fill(1.0)
        self._inertia_scale.fill(1.0)
        self._inertia_offset.fill(0.0)
        if self._dirty:
            mujoco.mj_setConst(m, self._scratch)
            self._dirty = False

    def _sample(self, terms: tuple, rng: np.random.Generator, info: dict) -> None:
        """Sample and apply ``terms`` (in this order, see ``_Sampler``), then re-derive the model constants."""
        sampler = self._samplers.get(terms)
        if sampler is None:
            sampler = self._samplers[terms] = _Sampler(self, terms)
        sampler.apply(self, rng, info)
        self._dirty = True
        mujoco.mj_setConst(self.model, self._scratch)

    def on_reset(self, rng: np.random.Generator) -> dict:
        """Sample this episode's values, apply them to the model; return them as a flat dict."""
        cfg, info = self.config, {}
        if self._reset_terms:
            self._sample(self._reset_terms, rng, info)
        if cfg.action_latency is not None:
            lo, hi = (round(self.scale * s) for s in cfg.action_latency.steps)
            self._set_latency(int(rng.integers(lo, hi + 1)))
            info["action_latency_steps"] = self._latency
        else:
            self._set_latency(0)
        if cfg.observation_noise is not None:
            on, f = cfg.observation_noise, self.scale
            n = len(self.joint_names) if self.joint_names is not None else None
            if n is not None:
                self._bias_q = f * on.position_bias_std * rng.standard_normal(n)
                self._bias_qd = f * on.velocity_bias_std * rng.standard_normal(n)
                for j, name in enumerate(self.joint_names):
                    info[f"obs_bias/{name}/position"] = float(self._bias_q[j])
                    info[f"obs_bias/{name}/velocity"] = float(self._bias_qd[j])
                self._refill_sensor_noise(rng)
            else:
                self._bias_q = None  # sized on the first flat observation (see sense_flat)
        an = cfg.action_noise
        if an is not None and an.std > 0:  # zeros until step 0 draws the first chunk
            self._act_buf.fill(0.0)
            self._act_noise = self._act_buf
        else:
            self._act_noise = None
        self.kernel_ptrs[1] = 0 if self._act_noise is None else _CHUNK
        if cfg.push is not None:
            self._next_push = int(rng.integers(cfg.push.interval_steps[0], cfg.push.interval_steps[1] + 1))
            self._push_end = -1
        return info

    def perturb_initial_state(self, rng: np.random.Generator) -> None:
        """Add the configured initial-state spread to ``data.qpos``/``data.qvel`` (after the task's own reset)."""
        init = self.config.initial_state
        if init is None:
            return
        f = self.scale
        self.data.qpos[self._init_qadr] += rng.uniform(-f * init.qpos, f * init.qpos, size=len(self._init_qadr))
        self.data.qvel[:] += rng.uniform(-f * init.qvel, f * init.qvel, size=self.model.nv)

    # ------------------------------------------------------------------ per step
    def process_action(self, action: np.ndarray, t: int, rng: np.random.Generator) -> np.ndarray:
        """Action noise then latency; ``action`` normalized, shape (nu,). Returns the action to apply now.

        No clip after the noise: MuJoCo clamps the resulting ctrl to the actuator ctrlrange.
        """
        if self._act_noise is not None:
            i = t % _CHUNK
            if i == 0:
                self._refill_action_noise(rng)
            action = action + self._act_noise[i]
        if self._latency == 0:
            return action
        buf = self._lat_buf
        buf[t % len(buf)] = action
        # Slot (t - latency) mod L holds the action from `latency` steps ago (zeros before the episode start).
        return buf[(t - self._latency) % len(buf)].copy() if t >= self._latency else np.zeros_like(action)

    def _noise_chunk(self, rng: np.random.Generator, out: np.ndarray, std: float) -> np.ndarray:
        """White noise for the next ``_CHUNK`` steps in one draw (per-step draws cost more than the physics), written
        into ``out`` ``(_CHUNK, n)`` (the values of ``(scale * std) * rng.standard_normal((_CHUNK, n))``).
        """
        rng.standard_normal(out=out)
        out *= self.scale * std
        return out

    def before_step(self, t: int, rng: np.random.Generator, info: dict) -> dict:
        """Interval resampling and pushes before control step ``t``; returns the (possibly new) info dict."""
        if self._interval_terms and t > 0:
            due = tuple(term for term, every in self._interval_terms if t % every == 0)
            if due:
                info = dict(info)
                self._sample(due, rng, info)
        push = self.config.push
        if push is not None:
            if t == self._push_end:
                self.data.xfrc_applied[:] = 0.0
            if t == self._next_push:
                idx, names = self._targets["push"]
                k = int(rng.integers(len(idx)))
                force = _random_vector(rng, self.scale * push.max_force_n)
                torque = _random_vector(rng, self.scale * push.max_torque_nm)
                self.data.xfrc_applied[:] = 0.0
                self.data.xfrc_applied[idx[k]] = np.concatenate([force, torque])
                self._push_end = t + push.duration_steps
                self._next_push = t + int(rng.integers(push.interval_steps[0], push.interval_steps[1] + 1))
                info = dict(info)
                info["push/body"] = names[k]
                info["push/force_n"] = float(np.linalg.norm(force))
                info["push/torque_nm"] = float(np.linalg.norm(torque))
                info["push/step"] = t
        return info

    def _refill_action_noise(self, rng: np.random.Generator) -> None:
        """Draw the action noise of the next ``_CHUNK`` steps (into the chunk buffer)."""
        self._noise_chunk(rng, self._act_buf, self.config.action_noise.std)

    def _set_latency(self, steps: int) -> None:
        """Set the episode's action latency; its ring of ``steps + 1`` actions starts zeroed."""
        if steps >= len(self._lat_store):  # a scale above 1 (planning models) widens the profile's range
            self._lat_store = np.zeros((steps + 1, self._lat_store.shape[1]))
            self.kernel_ptrs[2] = self._lat_store.ctypes.data
        self._latency = steps
        self._lat_buf = self._lat_store[:steps + 1]
        self._lat_buf.fill(0.0)
        self.kernel_ptrs[3], self.kernel_ptrs[4] = steps + 1, steps

    @property
    def _obs_i(self) -> int:
        """Row of the sensor-noise chunk for the next observation (``_CHUNK``: draw a new chunk first)."""
        return int(self.kernel_ptrs[8])

    @_obs_i.setter
    def _obs_i(self, i: int) -> None:
        self.kernel_ptrs[8] = i

    def compiled_inputs(self, t: int, rng: np.random.Generator, info: dict) -> tuple[int, dict]:
        """The random work of control step ``t`` for the compiled env step (:mod:`robot_rl.envs.fast_step`), in the
        Python step's order (same random stream): a new action-noise chunk where ``process_action`` draws one,
        ``before_step``, then the sensor-noise row (a new chunk where ``sense`` draws one). The kernel reads the
        arrays through ``kernel_ptrs``. Returns ``(sensor-noise row, info)``. Without per-step terms the env calls
        this only when the kernel reports that a chunk ran out (the kernel advances the sensor row itself).
        """
        if self._act_noise is not None and t % _CHUNK == 0:
            self._refill_action_noise(rng)
        if self.acts_per_step:
            info = self.before_step(t, rng, info)
        if not self.acts_on_sensors:
            return 0, info
        i = self._obs_i
        if i == _CHUNK:
            self._refill_sensor_noise(rng)
            i = 0
        self._obs_i = i + 1
        return i, info

    def _next_sensor_row(self, rng: np.random.Generator) -> int:
        """Row of the sensor-noise chunk for this observation (a new chunk is drawn after its last row)."""
        i = self._obs_i
        if i == _CHUNK:
            self._refill_sensor_noise(rng)
            i = 0
        self._obs_i = i + 1
        return i

    def sense(self, q: np.ndarray, qd: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Measured joint positions/velocities with bias and white noise (new arrays)."""
        i = self._next_sensor_row(rng)
        return q + self._q_noise[i], qd + self._qd_noise[i]

    def sense_lists(self, q: list, qd: list, rng: np.random.Generator) -> tuple[list, list]:
        """``sense`` on Python lists of floats (same values: the same noise, added in float64)."""
        i = self._next_sensor_row(rng)
        ql = self._q_noise_l
        if ql is None:
            if i == 0:  # a reset's observation (the compiled step reads the arrays): convert only this row
                return (list(map(operator.add, q, self._q_noise[0].tolist())),
                        list(map(operator.add, qd, self._qd_noise[0].tolist())))
            # The Python step: the chunk as Python floats, one conversion per chunk instead of one per step.
            ql = self._q_noise_l = self._q_noise.tolist()
            self._qd_noise_l = self._qd_noise.tolist()
        return list(map(operator.add, q, ql[i])), list(map(operator.add, qd, self._qd_noise_l[i]))

    def _refill_sensor_noise(self, rng: np.random.Generator) -> None:
        on = self.config.observation_noise
        self._noise_chunk(rng, self._q_noise, on.position_std)
        self._q_noise += self._bias_q  # (bias + white noise, the same values as bias + chunk)
        self._noise_chunk(rng, self._qd_noise, on.velocity_std)
        self._qd_noise += self._bias_qd
        self._q_noise_l = self._qd_noise_l = None  # Python-float copies for sense_lists, made when it asks
        self._obs_i = 0
        self.kernel_ptrs[7] = _CHUNK

    def sense_flat(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Flat-observation noise (dm_control tasks): ``position_std`` white + ``position_bias_std`` bias."""
        on = self.config.observation_noise
        if on is None:
            return obs
        if self._bias_q is None or np.shape(self._bias_q) != obs.shape:
            self._bias_q = self.scale * on.position_bias_std * rng.standard_normal(obs.shape)
        noise = self._bias_q + self.scale * on.position_std * rng.standard_normal(obs.shape)
        return (obs + noise).astype(obs.dtype)



def _random_vector(rng: np.random.Generator, max_norm: float) -> np.ndarray:
    """Uniform direction, magnitude ~ U(0, max_norm)."""
    v = rng.standard_normal(3)
    return v / (np.linalg.norm(v) + 1e-12) * rng.uniform(0.0, max_norm)


class RandomizationControls:
    """Randomization switches shared by every env (MuJoCo tasks and the dm_control adapter).

    The env sets ``self.randomizer`` (a ``Randomizer`` or None), ``self._rand_info`` (values in effect) and
    ``self._t`` (control steps since reset) in its own constructor and reset/step.
    """

    randomizer: Randomizer | None
    _randomization_enabled: bool
    _rand_info: dict
    _t: int

    @property
    def step_count(self) -> int:
        """Control steps since the last reset (0 right after ``reset``)."""
        return self._t

    @property
    def randomization_info(self) -> dict:
        """The randomization values in effect (flat dict as in ``info["randomization"]``; empty when off), a copy."""
        return dict(self._rand_info)

    @property
    def randomization_enabled(self) -> bool:
        """Randomization on (training) or off (evaluation: nominal model, no noise); applies from the next reset."""
        return self._randomization_enabled

    @randomization_enabled.setter
    def randomization_enabled(self, value: bool) -> None:
        if value and self.randomizer is None:
            raise ValueError("this env was made without a randomization profile (randomization=None); "
                             "pass one to make() to switch randomization on")
        self._randomization_enabled = bool(value)
        self._randomization_switched()

    def _randomization_switched(self) -> None:
        """Called when ``randomization_enabled`` is set (the compiled step points its table at the new state)."""

    @property
    def randomization_scale(self) -> float:
        """Curriculum factor in [0, 1] multiplying every randomization range (1 = the ranges as configured)."""
        return self.randomizer.scale if self.randomizer is not None else 0.0

    @randomization_scale.setter
    def randomization_scale(self, value: float) -> None:
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"randomization_scale must be in [0, 1], got {value}")
        if self.randomizer is not None:
            self.randomizer.scale = float(value)  # used from the next sample (reset or interval)
