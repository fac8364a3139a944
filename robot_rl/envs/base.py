"""The MuJoCo task env: one class that runs any task declaration (:class:`robot_rl.envs.task.TaskSpec`).

It does the shared work: action scaling, frame skip, physics-error checks, randomization, time limit, and evaluates
the task's declared observation, reward, termination and success terms. A task with extra physics (the arm's gravity
compensation) or a dict observation subclasses it and overrides ``_before_physics`` / ``_package_obs``.

Per-step cost is kept low (see bench/bench_envs.py): index arrays are precomputed, ``mj_step`` runs ``frame_skip``
steps in one call, and divergence is detected from MuJoCo's warning counters (mjWARN_BADQPOS/QVEL/QACC/CTRL) plus a
finiteness check of the state, every step. MuJoCo resets a diverged state silently; we end the episode instead
(``terminated=True``, ``info["physics_error"]=True``) and never hide it. The public state API (joints, state, goal,
reward of a state) is :class:`robot_rl.envs.joint_state.JointStateAPI`, which the env inherits.
"""

from __future__ import annotations

import math

import gymnasium as gym
import mujoco
import numpy as np

from robot_rl.core.profile import RobotProfile, actuator_for_joint, load_profile
from robot_rl.envs import fast_step as _fast_step
from robot_rl.envs.joint_state import JointStateAPI
from robot_rl.envs.obs import ObservationBuilder
from robot_rl.envs.randomization import RandomizationControls
from robot_rl.envs.task import BoundTask, TaskSpec

_F32 = np.dtype(np.float32)
_KERNEL_DTYPES = (_F32, np.dtype(np.float64))  # action dtypes of the compiled step
_DIVERGENCE_WARNINGS = sorted(int(w) for w in (mujoco.mjtWarning.mjWARN_BADQPOS, mujoco.mjtWarning.mjWARN_BADQVEL,
                                                 mujoco.mjtWarning.mjWARN_BADQACC, mujoco.mjtWarning.mjWARN_BADCTRL))
# The four counters are adjacent in mjtWarning, so one slice (a view, no fancy indexing) reads them every step.
assert _DIVERGENCE_WARNINGS == list(range(_DIVERGENCE_WARNINGS[0], _DIVERGENCE_WARNINGS[-1] + 1))
_WARN_SLICE = slice(_DIVERGENCE_WARNINGS[0], _DIVERGENCE_WARNINGS[-1] + 1)


def joint_addresses(model, names) -> tuple[np.ndarray, np.ndarray]:
    """Return the qpos and dof addresses of 1-dof joints ``names`` (KeyError naming a missing joint)."""
    qadr, dadr = [], []
    for name in names:
        jid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)
        if jid < 0:
            raise KeyError(f"MJCF has no joint {name!r}")
        qadr.append(model.jnt_qposadr[jid])
        dadr.append(model.jnt_dofadr[jid])
    return np.asarray(qadr, dtype=np.intp), np.asarray(dadr, dtype=np.intp)


class MujocoTaskEnv(JointStateAPI, RandomizationControls, gym.Env):
    """A robot_rl MuJoCo task (Gymnasium API, actions in [-1, 1]) running the declaration ``spec``.

    Args:
        spec: the task declaration (robot profile, frame skip, observation, inputs, terms, initial state).
        max_episode_steps: control steps until ``truncated=True`` (default: the spec's).
        randomization: None (off), a profile name (``sim/randomization/<name>.yaml``), a path or a
            ``RandomizationConfig``.
        seed: seeds ``np_random`` (the only source of randomness of the env and its randomization).
        render_mode: None or ``"rgb_array"``.
        compiled_step: None (default): run ``step``'s per-step work between action and reward as one compiled call
            (:mod:`robot_rl.envs.fast_step`) when the task allows it and numba builds the kernel, else in Python;
            True: require it (ValueError naming why a task cannot); False: always Python. The two give bit-identical
            results.

    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 50}

    def __init__(self, spec: TaskSpec, *, max_episode_steps: int | None = None, randomization=None,
                 seed: int | None = None, render_mode: str | None = None, compiled_step: bool | None = None,
                 profile: RobotProfile | None = None):
        self.task = spec
        self.name = spec.name
        for key, value in spec.options.items():  # task options as attributes (env.swingup, env.distance_threshold)
            if hasattr(self, key):
                raise ValueError(f"{self.name}: task option {key!r} would shadow the env attribute of that name")
            setattr(self, key, value)
        self.profile = load_profile(spec.robot) if profile is None else profile
        self.model = self._load_model()
        self.data = mujoco.MjData(self.model)
        self.frame_skip = int(spec.frame_skip)
        self.control_dt = self.frame_skip * float(self.model.opt.timestep)
        if not math.isclose(self.control_dt, self.profile.control_period_s, rel_tol=1e-9):
            raise ValueError(f"{self.name}: frame_skip {self.frame_skip} x timestep {self.model.opt.timestep} = "
                             f"{self.control_dt} s differs from profile control_period_s "
                             f"{self.profile.control_period_s} s")
        self.max_episode_steps = int(spec.max_episode_steps if max_episode_steps is None else max_episode_steps)
        self.render_mode = render_mode
        self.metadata = dict(self.metadata, render_fps=round(1.0 / self.control_dt))
        # Measured joints (profile order) and actuated joints (command order).
        self._qadr, self._dadr = joint_addresses(self.model, self.profile.joint_names)
        self._act = np.asarray([actuator_for_joint(self.model, n) for n in self.profile.command_joints], dtype=np.intp)
        if len(self._act) != self.model.nu or not np.array_equal(self._act, np.arange(self.model.nu)):
            raise ValueError(f"{self.name}: command_joints {self.profile.command_joints} must drive the "
                             f"model's actuators 0..{self.model.nu - 1} in order")
        lo, hi = self.model.actuator_ctrlrange[:, 0].copy(), self.model.actuator_ctrlrange[:, 1].copy()
        self._ctrl_mid, self._ctrl_half = (hi + lo) / 2.0, (hi - lo) / 2.0
        self._ctrl_symmetric = not self._ctrl_mid.any()
        self._act_shape = self._ctrl_mid.shape
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(self.model.nu,), dtype=np.float32)
        self.observation_builder = self._make_observation_builder()
        self.obs_names = self.observation_builder.names
        self.observation_space = self._make_observation_space()
        self._warnings = self.data.warning.number[_WARN_SLICE]  # live view of the divergence counters
        self._list_obs = self.observation_builder.batchable
        self._qadr_l, self._dadr_l = self._qadr.tolist(), self._dadr.tolist()
        self._all_joints = self._qadr_l == list(range(self.model.nq)) and self._dadr_l == list(range(self.model.nv))
        # Cached views of MjData arrays (each `data.qpos` attribute access builds a new numpy view).
        self._qpos, self._qvel, self._ctrl = self.data.qpos, self.data.qvel, self.data.ctrl
        # Hooks that a task overrides (the no-op defaults are not called per step).
        cls = type(self)
        self._hooked_physics = cls._before_physics is not MujocoTaskEnv._before_physics
        self._packaged_obs = cls._package_obs is not MujocoTaskEnv._package_obs
        clamp_off = self.model.opt.disableflags & mujoco.mjtDisableBit.mjDSBL_CLAMPCTRL
        if not self.model.actuator_ctrllimited.all() or clamp_off:
            raise ValueError(f"{self.name}: every actuator needs a ctrlrange that MuJoCo clamps to")
        self._empty1 = np.zeros(0)
        self._goal = None
        self._t = 0
        self._renderer = None
        from robot_rl.envs.randomization import Randomizer  # local: randomization imports this module's helpers

        self.randomizer = Randomizer.from_spec(randomization, self.model, self.data, self.profile)
        self.randomization_enabled = self.randomizer is not None
        self._rand_info: dict = {}
        self._last_action = np.zeros(self.model.nu)  # the previous step's action (for last_action reward inputs)
        self._tracks_last_action = spec.reads_last_action
        self.terms = BoundTask(spec, self)
        self._rp = self.terms.params
        self._reward_kernel_factory = self.terms.kernel_factory
        self._setup()
        self._init_compiled_step(compiled_step)
        if seed is not None:
            self.reset(seed=seed)

    def _init_compiled_step(self, compiled_step: bool | None) -> None:
        why = None
        if not self._list_obs:
            why = "its observation needs forward kinematics"
        elif self._hooked_physics:
            why = "it overrides _before_physics"
        elif self.task.reads_last_action:
            why = "its reward reads the previous action"
        elif not self._ctrl_symmetric:
            why = "an actuator ctrlrange is not symmetric"
        if compiled_step and why is not None:
            raise ValueError(f"{self.name}: compiled_step=True is not possible: {why}")
        self._compiled = compiled_step is not False and why is None
        self._kernel = None  # built (once per process) on the first step
        self._fast = False  # step's short path (set when the kernel is built)
        if self._compiled:
            ob, nu = self.observation_builder, self.model.nu
            head = [self.model._address, self.data._address, self.frame_skip, len(self._qadr), int(ob._trig)]
            lay = np.concatenate([np.asarray(head, np.int64), self._qadr, self._dadr, ob._index]).astype(np.int64)
            fbuf = np.concatenate([self._ctrl_half, np.zeros(nu)])
            self._a_out = fbuf[nu:]  # the action the reward sees (written by the kernel)
            self._n_obs = len(ob._index)
            self._last_warn_arr = np.array(self._warnings)
            self._reward_compiled = self._reward_kernel_factory is not None
            rp = self._rp
            # The kernel's layout and the env's arrays it reads and writes, by address, in one table (fewer
            # arguments: numba's dispatch costs per argument); the env keeps every array alive (views of the model's
            # and data's arrays, fbuf, rp, last_warn, the randomizer's table).
            self._k_fbuf, self._k_rp = fbuf, rp
            self._k_no_rand = np.zeros(9, np.int64)  # the randomizer's kernel_ptrs when randomization is off
            self._k_tab = self._kernel_table(fbuf, self._last_warn_arr, lay)
            self._k_lay = self._k_tab[_fast_step.TAB_LAY:]
            self._randomization_switched()
        self._require_compiled = bool(compiled_step)

    def _kernel_table(self, fbuf: np.ndarray, last_warn: np.ndarray, lay: np.ndarray) -> np.ndarray:
        """The compiled step's table (``fast_step.TAB_*``): [ctrl, qpos, qvel, warning counters (int32), fbuf, reward
        parameters, last_warn (int32) addresses; nq, nv, number of counters, their stride in int32s, number of
        parameters; the randomizer table's address (no randomization here), the sensor-noise row (-1), nu; lay].
        """
        w = self._warnings
        arrays = (self._ctrl, self._qpos, self._qvel, w, fbuf, self._k_rp, last_warn)
        head = [a.ctypes.data for a in arrays] + [self.model.nq, self.model.nv, len(w), w.strides[0] // 4,
                                                  len(self._k_rp), self._k_no_rand.ctypes.data, -1, self.model.nu]
        return np.concatenate([np.array(head, np.int64), lay])

    def _randomization_switched(self) -> None:
        if getattr(self, "_k_tab", None) is not None:
            on = self._randomization_enabled and self.randomizer is not None
            self._k_tab[_fast_step.TAB_RZ] = (self.randomizer.kernel_ptrs if on else self._k_no_rand).ctypes.data

    @property
    def _goal(self) -> np.ndarray | None:
        """The task's goal vector (float64) or None; the compiled step reads ``_k_goal`` (an empty array for None)."""
        return self._goal_v

    @_goal.setter
    def _goal(self, goal: np.ndarray | None) -> None:
        self._goal_v = goal
        self._k_goal = self._empty1 if goal is None else np.require(goal, np.float64, ("C", "W"))

    @property
    def compiled_step(self) -> bool:
        """Whether ``step`` runs the compiled kernel (:mod:`robot_rl.envs.fast_step`)."""
        return self._compiled

    # ------------------------------------------------------------------ task hooks
    def _setup(self) -> None:
        """Subclass hook: extra indices and buffers, called at the end of ``__init__`` (before the seeding reset)."""

    def _load_model(self) -> mujoco.MjModel:
        """Subclass hook: the task's model (default: the profile's, :func:`robot_rl.core.model.load_model`); task
        options are already attributes.
        """
        return self.profile.load_model()

    def _make_observation_builder(self) -> ObservationBuilder:
        spec = self.task
        sites = tuple(dict.fromkeys((*spec.fk_sites, *spec.sites)))
        needs_model = bool(sites) or any(k in ("site", "site_minus_goal") for _, k, _, _ in spec.observation)
        goal_terms = any(k in ("goal", "site_minus_goal") for _, k, _, _ in spec.observation)
        return ObservationBuilder(self.profile.joint_names, [t[:3] for t in spec.observation],
                                  units=[t[3] for t in spec.observation], goal_dim=spec.goal_dim if goal_terms else 0,
                                  model=self.model if needs_model else None, fk_sites=sites)

    def _before_physics(self) -> None:
        """Called after ``data.ctrl`` is set, before ``mj_step`` (e.g. to add gravity compensation)."""

    def _initial_state(self, rng: np.random.Generator) -> np.ndarray | None:
        return self.task.initial_state(self, rng)

    def _evaluate(self, action: np.ndarray) -> tuple[float, bool, bool | None]:
        """(reward, terminated, is_success or None) of the current state: the task's declared terms
        (:class:`robot_rl.envs.task.BoundTask`). ``action``: normalized, after action noise / latency, not clipped.
        """
        return self.terms.evaluate(action)

    def _evaluate_batch(self, qpos: np.ndarray, qvel: np.ndarray, action: np.ndarray):
        """``_evaluate`` of N envs of this (scalar) task from their ``qpos (N, nq)``, ``qvel (N, nv)`` and
        ``action (N, n_act)`` rows (``BoundTask.evaluate_batch``).
        """
        return self.terms.evaluate_batch(qpos, qvel, action)

    def compute_reward(self, achieved_goal, desired_goal, info=None):
        """Goal-conditioned tasks: the reward of (batches of) achieved and desired goals, shape ``(...)`` from
        ``(..., goal_dim)`` inputs (the task's reward terms; ``info`` is unused).
        """
        return self.terms.compute_reward(achieved_goal, desired_goal)

    def _make_observation_space(self) -> gym.Space:
        n = self.observation_builder.n_obs
        return gym.spaces.Box(-np.inf, np.inf, shape=(n,), dtype=np.float32)

    def _package_obs(self, obs: np.ndarray):
        return obs

    # ------------------------------------------------------------------ observation
    def _observe(self) -> np.ndarray:
        if self._list_obs:  # small layouts without forward kinematics: Python floats, as cheap as it gets
            q, qd = self._qpos.tolist(), self._qvel.tolist()
            if not self._all_joints:
                q, qd = [q[i] for i in self._qadr_l], [qd[i] for i in self._dadr_l]
            if self._randomization_enabled and self.randomizer.acts_on_sensors:
                q, qd = self.randomizer.sense_lists(q, qd, self._np_random)
            return self.observation_builder.build_lists(q, qd, self._goal)
        q, qd = self._qpos[self._qadr], self._qvel[self._dadr]
        if self.randomization_enabled and self.randomizer.acts_on_sensors:
            q, qd = self.randomizer.sense(q, qd, self._np_random)
        return self.observation_builder.build(q, qd, self._goal)

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        rng = self.np_random
        m, d = self.model, self.data
        if self.randomizer is not None:
            self.randomizer.restore_nominal()
        mujoco.mj_resetData(m, d)
        if self.randomization_enabled:
            self._rand_info = self.randomizer.on_reset(rng)
            mujoco.mj_resetData(m, d)
        else:
            self._rand_info = {}
        self._goal = self._initial_state(rng)
        if self.randomization_enabled:
            self.randomizer.perturb_initial_state(rng)
        mujoco.mj_forward(m, d)
        self._t = 0
        self._last_action[:] = 0.0
        self._last_warn = self._warnings.tobytes()
        if self._compiled:
            self._last_warn_arr[:] = self._warnings
        info = {"randomization": dict(self._rand_info), "physics_error": False}
        success = self._success_at_reset()
        if success is not None:
            info["is_success"] = success
        return self._package_obs(self._observe()), info

    def _success_at_reset(self) -> bool | None:
        if self.task.success is None:
            return None
        return self._evaluate(np.zeros(self.model.nu))[2]

    def step(self, action):
        if self._fast:
            # The usual case, the compiled step with the task's compiled reward and no per-step randomization terms
            # (see _build_kernel), with as little Python around it as possible; _step has the same logic in full.
            t = self._t
            obs = np.empty(self._n_obs, _F32)  # (a dtype object: numpy converts a type on every call)
            try:
                status, reward, terminated, success = self._kernel(action, t, self._k_goal, obs, self._k_tab)
            except TypeError:  # not an array type the kernel is compiled for (a list, another dtype, a strided view)
                return self._step(action)
            if status == 0:
                self._t = t + 1
                info = {"randomization": dict(self._rand_info), "physics_error": False}
                if success >= 0:
                    info["is_success"] = success == 1
                return obs, reward, terminated, t + 1 >= self.max_episode_steps, info
            if status == 1:
                self._t = t + 1
                self._last_warn = self._warnings.tobytes()
                return self._diverged(obs, action)
            # status 2: a noise chunk runs out at this step (nothing was done): _step draws it first; status 3: the
            # action has the wrong length (_step raises).
        return self._step(action)

    def _step(self, action):
        """The step behind ``step``: the compiled kernel when the env has one, else the Python step.

        One function on purpose: it runs every env step, where a cart-pole step's physics takes about 5 us and each
        extra Python call would add about 0.05 us plus a dozen locals passed along; the compiled and the Python path
        stay side by side because they must give the same random draws and results.
        """
        a = action if type(action) is np.ndarray else np.asarray(action, dtype=np.float64)  # read only below
        if a.shape != self._act_shape:
            a = a.reshape(-1)
            if a.shape != self._act_shape:
                raise ValueError(f"action must have shape {self.action_space.shape}, got {np.shape(action)}")
        k = self._kernel
        if k is None and self._compiled:
            k = self._build_kernel()
        if k is not None:  # the compiled step (robot_rl.envs.fast_step): same random draws, same results
            if a.dtype not in _KERNEL_DTYPES or not (a.flags.c_contiguous and a.flags.writeable):
                a = np.array(a, dtype=np.float64)  # the kernel is compiled for these (see _build_kernel)
            t, tab = self._t, self._k_tab
            ptrs = self._k_no_rand
            try:
                if self._randomization_enabled:
                    rz = self.randomizer
                    ptrs = rz.kernel_ptrs
                    if rz.acts_per_step:  # pushes / interval terms: every step's draws in the Python step's order
                        tab[_fast_step.TAB_OI], self._rand_info = rz.compiled_inputs(t, self._np_random,
                                                                                      self._rand_info)
                obs = np.empty(self._n_obs, _F32)
                status, reward, terminated, success = k(a, t, self._k_goal, obs, tab)
                if status == 2:  # a noise chunk runs out at this step (nothing done yet): draw it, then step
                    tab[_fast_step.TAB_OI], self._rand_info = rz.compiled_inputs(t, self._np_random,
                                                                                  self._rand_info)
                    status, reward, terminated, success = k(a, t, self._k_goal, obs, tab)
            finally:
                tab[_fast_step.TAB_OI] = -1  # the kernel takes the row from the randomizer's table (and advances it)
            self._t = t + 1
            if not status:
                if self._reward_compiled:
                    success = None if success < 0 else success == 1
                else:  # the reward sees the action after noise / latency (a new float64 array), else the input
                    reward, terminated, success = self._evaluate(self._a_out if ptrs[1] or ptrs[4] else a)
                info = {"randomization": dict(self._rand_info), "physics_error": False}
                if success is not None:
                    info["is_success"] = success
                if self._packaged_obs:
                    obs = self._package_obs(obs)
                return obs, reward, terminated, self._t >= self.max_episode_steps, info
            self._last_warn = self._warnings.tobytes()
            return self._diverged(obs, action)
        m, d = self.model, self.data
        # No numpy clip here (it costs more than the physics of a small model): MuJoCo clamps ctrl to the
        # actuator ctrlrange (checked in __init__), which is the same as clipping the action to [-1, 1]; tasks
        # clip the scalars they use in rewards. A NaN makes MuJoCo zero the controls and count mjWARN_BADCTRL.
        if self._randomization_enabled:  # (properties cost a call per access)
            rz, rng = self.randomizer, self._np_random
            if rz.acts_on_action:
                a = rz.process_action(a, self._t, rng)
            if rz.acts_per_step:
                self._rand_info = rz.before_step(self._t, rng, self._rand_info)
        info_rand = self._rand_info
        if self._ctrl_symmetric:  # one ufunc call instead of two (every task's ctrlrange is symmetric)
            np.multiply(self._ctrl_half, a, out=self._ctrl)
        else:
            np.add(self._ctrl_mid, self._ctrl_half * a, out=self._ctrl)
        if self._hooked_physics:
            self._before_physics()
        mujoco.mj_step(m, d, self.frame_skip)
        self._t += 1
        warn = self._warnings.tobytes()  # cheaper than a numpy reduction on 4 ints
        obs = self._observe()
        # Counters catch what MuJoCo repaired silently (bad qacc -> reset); the dot product catches a non-finite state
        # (|obs| past 1.8e19 overflows the float32 dot product and counts too: such a state has diverged anyway).
        error = warn != self._last_warn or not math.isfinite(obs.dot(obs))
        if error:
            self._last_warn = warn
            reward, terminated, success = 0.0, True, False
            obs = np.nan_to_num(obs, nan=0.0, posinf=0.0, neginf=0.0)
        else:
            reward, terminated, success = self._evaluate(a)
            if self._tracks_last_action:
                self._last_action[:] = a
        info = {"randomization": dict(info_rand), "physics_error": error}  # fresh dicts: callers keep infos
        if success is not None:
            info["is_success"] = success
        if error and not math.isfinite(float(np.sum(action))):
            info["error"] = "non-finite action"
        if self._packaged_obs:
            obs = self._package_obs(obs)
        return obs, reward, terminated, self._t >= self.max_episode_steps, info

    def _build_kernel(self):
        """The compiled step kernel (None: Python step), after one warm-up step from the current state that compiles
        it for this env's argument types; the state (and the divergence counters) are restored after it.
        """
        k = _fast_step.kernel(self._reward_kernel_factory)
        if k is not None:
            scratch = (self._k_fbuf.copy(), self._last_warn_arr.copy())  # kept alive while the warm-up runs
            tab = self._kernel_table(*scratch, self._k_lay)
            tab[_fast_step.TAB_OI] = 0

            def call():
                for dtype in _KERNEL_DTYPES:  # the action dtypes of policies and of lists
                    k(np.zeros(self.model.nu, dtype), 0, self._k_goal, np.empty(self._n_obs, np.float32), tab)
                # No other signatures: an argument of another type raises TypeError (step then converts the action)
                # instead of compiling a variant for a second or two in the middle of an episode.
                k.disable_compile()

            if not _fast_step.warm_up(self.model, self.data, call, f"{self.name}: the compiled step"):
                k = None
        self._kernel = k
        rz = self.randomizer
        self._fast = (k is not None and self._reward_compiled and not self._packaged_obs
                      and (rz is None or not rz.acts_per_step))
        if k is None:
            if self._require_compiled:
                raise RuntimeError(f"compiled_step=True but {_fast_step.unavailable_reason()}")
            self._compiled = False
        return k

    def _diverged(self, obs: np.ndarray, action):
        """The compiled step's result for a diverged step (as the Python step's error branch)."""
        obs = np.nan_to_num(obs, nan=0.0, posinf=0.0, neginf=0.0)
        info = {"randomization": dict(self._rand_info), "physics_error": True, "is_success": False}
        if not math.isfinite(float(np.sum(action))):
            info["error"] = "non-finite action"
        if self._packaged_obs:
            obs = self._package_obs(obs)
        return obs, 0.0, True, self._t >= self.max_episode_steps, info

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        if self._renderer is None:
            self._renderer = mujoco.Renderer(self.model, 240, 320)
        self._renderer.update_scene(self.data, camera=0 if self.model.ncam else -1)
        return self._renderer.render()

    def close(self):
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
