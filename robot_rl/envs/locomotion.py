"""Legged velocity tracking: the batched env that runs a :class:`robot_rl.envs.legged_task.LocomotionSpec`.

The robot is position-controlled as on hardware: an action in [-1, 1]^n_j is an offset from the profile's standing
pose times ``action_scale``; MuJoCo's position servos (the profile's ``kp``, ``kd``, torque limits) track the
target at the physics rate, as the robot's firmware does. The observation is :mod:`robot_rl.core.legged_obs`
(IMU, joints, last action, command, gait clock). Commands (vx, vy, yaw rate) are redrawn during episodes.

Rewards are the declaration's named, weighted terms, whose parameter names are the inputs listed in
:data:`robot_rl.envs.legged_task.INPUTS`, each a batch-shaped numpy function evaluated on all envs at once; the
reward is their weighted sum, floored at ``reward_floor`` (so staying alive never costs more than falling).

Physics is batched with ``mujoco.rollout`` (its C++ thread pool steps the envs in parallel, each with its own
model when domain randomization draws variants; the Python side is a handful of numpy calls per step, whatever
the number of envs). See bench/results/go2.md for speed against raw ``mj_step``.

The model is built in :mod:`robot_rl.envs.locomotion_model` (sensors, randomized variants); the one-env ``gym.Env``
wrapper is :class:`robot_rl.envs.locomotion_env.LocomotionEnv`.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium.vector import VectorEnv
from mujoco import rollout as mj_rollout

from robot_rl.core.legged_obs import (
    gravity_in_frame,
    locomotion_observation,
    moving,
    observation_names,
    observation_units,
)
from robot_rl.core.profile import load_profile
from robot_rl.envs.legged_task import (  # noqa: F401 - re-exported: the declaration lives beside the env
    INPUTS,
    LocomotionRandomization,
    LocomotionSpec,
    as_randomization,
)
from robot_rl.envs.locomotion_model import (
    add_sensors,
    cpus,
    make_variants,
    nominal_height,
    rotation_matrices,
)


class LocomotionVecEnv(VectorEnv):
    """``num_envs`` copies of a :class:`LocomotionSpec` task, stepped together (Gymnasium ``VectorEnv``, same-step
    autoreset: ``infos["final_obs"]`` holds the last observation of envs that ended, ``infos["_final_obs"]`` marks
    them).

    Args:
        spec: the task declaration.
        num_envs: parallel envs.
        seed: seeds everything random (variants, resets, commands, noise).
        randomization: None, ``"train"``, ``"reality"``, ``"nominal"``, a mapping or a ``LocomotionRandomization``.
        num_threads: threads of MuJoCo's rollout pool (default: the CPUs this process may use).
        render_mode: None or ``"rgb_array"`` (renders env 0).

    """

    metadata = {"render_modes": ["rgb_array"], "autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}
    privileged_names = ("base_lin_vel_x", "base_lin_vel_y", "base_lin_vel_z", "base_height")
    """What :meth:`privileged` returns: true state the robot does not measure (for an asymmetric critic)."""
    privileged_size = len(privileged_names)

    def __init__(self, spec: LocomotionSpec, num_envs: int, *, seed: int | None = 0, randomization=None,
                 num_threads: int | None = None, render_mode: str | None = None, max_episode_steps: int | None = None):
        self.task = spec
        self.name = spec.name
        self.num_envs = n = int(num_envs)
        self.render_mode = render_mode
        self.max_episode_steps = int(max_episode_steps or spec.max_episode_steps)
        self.profile = p = load_profile(spec.robot)
        if p.command_interface != "position" or not p.standing_pose or not p.imu_site:
            raise ValueError(f"{spec.name}: robot {p.name!r} needs a position interface, a standing_pose and an "
                             f"imu_site in hardware/{p.name}.yaml")
        self.randomization = as_randomization(randomization)
        self._rng = np.random.default_rng(seed)
        self.model = p.load_model(visual=False, joint_friction=spec.joint_friction, edit=self._add_sensors)
        m = self.model
        period = spec.frame_skip * m.opt.timestep
        if not math.isclose(period, p.control_period_s, rel_tol=1e-9):
            raise ValueError(f"{spec.name}: frame_skip {spec.frame_skip} x timestep {m.opt.timestep} = {period} s, "
                             f"but hardware/{p.name}.yaml has control_period_s {p.control_period_s}")
        self.dt = period
        self.n_joints = nj = len(p.command_joints)
        self._jq = np.array([m.jnt_qposadr[m.joint(j).id] for j in p.command_joints])
        self._jv = np.array([m.jnt_dofadr[m.joint(j).id] for j in p.command_joints])
        self._stand = np.asarray(p.standing_pose, dtype=np.float64)
        rng_lim = np.array([m.jnt_range[m.joint(j).id] for j in p.command_joints])
        self._lower, self._upper = rng_lim[:, 0] - self._stand, rng_lim[:, 1] - self._stand
        self._feet = len(spec.feet)
        self._offsets = np.asarray(spec.gait_offsets)
        self._spec_state = mujoco.mjtState.mjSTATE_FULLPHYSICS
        self._nstate = mujoco.mj_stateSize(m, self._spec_state)
        self._qpos0 = 1  # state layout: [time, qpos, qvel, act]; checked below
        assert mujoco.mj_stateSize(m, mujoco.mjtState.mjSTATE_TIME) == 1
        self._qvel0 = 1 + m.nq
        self._sensor = {m.sensor(i).name: (m.sensor_adr[i], m.sensor_dim[i]) for i in range(m.nsensor)}
        self._variants = make_variants(self.model, self.profile, self.task, self.randomization, self._rng)
        self._variant = np.zeros(n, dtype=np.int64)
        self._pinned: np.ndarray | None = None
        self._models = [self._variants[0]] * n
        self._order: np.ndarray | None = None  # envs grouped by variant for the rollout (see _physics)
        self._pool = mj_rollout.Rollout(nthread=num_threads if num_threads is not None else cpus())
        self._datas = [mujoco.MjData(m) for _ in range(max(1, num_threads or cpus()))]
        self._scratch = mujoco.MjData(m)
        self._state = np.zeros((n, self._nstate))
        self._out_state = np.zeros((n, spec.frame_skip, self._nstate))
        self._out_sensor = np.zeros((n, spec.frame_skip, m.nsensordata))
        self._ctrl = np.zeros((n, spec.frame_skip, m.nu))
        self._sensordata = np.zeros((n, m.nsensordata))
        self._stand_height = nominal_height(self.model, self._scratch, self._jq, self._stand, spec)
        # per-env episode state
        self._t = np.zeros(n, dtype=np.int64)
        self._command = np.zeros((n, 3))
        self._until = np.zeros(n)
        self._phase = np.zeros(n)
        self._action = np.zeros((n, nj))
        self._pending = np.zeros((n, nj))
        self._delay = np.zeros(n, dtype=bool)
        self._calibration = np.zeros((n, nj))
        self._gyro_bias = np.zeros((n, 3))
        self._down = np.ones((n, self._feet), dtype=bool)
        self._air = np.zeros((n, self._feet))
        self._push_at = np.zeros(n)
        self._term_names = [t.name for t in spec.reward]
        self._term_sums = np.zeros(len(spec.reward))
        self._term_count = 0
        self._track_sums = np.zeros(2)  # |v_xy - command_xy|, |yaw rate - command| summed over steps (env means)
        self._falls_steps = np.zeros(2, dtype=np.int64)  # falls, env steps
        self._renderer = None
        self._render_model = self._render_data = None
        n_obs = len(observation_names(p.command_joints))
        self.obs_names = observation_names(p.command_joints)
        self.obs_units = observation_units(p.command_joints)
        self.single_observation_space = gym.spaces.Box(-np.inf, np.inf, (n_obs,), np.float32)
        self.single_action_space = gym.spaces.Box(-1.0, 1.0, (nj,), np.float32)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, n)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, n)
        self._reset_rows(np.arange(n))

    # ------------------------------------------------------------------ model
    def _add_sensors(self, spec) -> None:
        add_sensors(spec, self.task, self.profile)

    def _sensor_block(self, first: str, count: int, dim: int) -> slice:
        adr = self._sensor[first][0]
        return slice(adr, adr + count * dim)

    # ------------------------------------------------------------------ episodes
    def _reset_rows(self, ids: np.ndarray) -> None:
        if ids.size == 0:
            return
        rng, m, r = self._rng, self.model, self.randomization
        k = ids.size
        nj = self.n_joints
        self._variant[ids] = rng.integers(len(self._variants), size=k) if self._pinned is None else self._pinned[ids]
        for i in ids:
            self._models[i] = self._variants[self._variant[i]]
        self._order = None
        qpos = np.tile(m.qpos0, (k, 1))
        qpos[:, 2] = self._stand_height
        yaw = rng.uniform(-math.pi, math.pi, k)
        qpos[:, 3], qpos[:, 6] = np.cos(yaw / 2), np.sin(yaw / 2)
        qpos[:, 4:6] = 0.0
        qpos[:, self._jq] = self._stand + rng.uniform(-1, 1, (k, nj)) * self.task.init_joint_noise
        qvel = np.zeros((k, m.nv))
        qvel[:, :6] = rng.uniform(-0.1, 0.1, (k, 6))
        st = self._state
        st[ids] = 0.0
        st[ids, self._qpos0:self._qpos0 + m.nq] = qpos
        st[ids, self._qvel0:self._qvel0 + m.nv] = qvel
        d = self._scratch
        for _row, i in enumerate(ids):  # the sensors of the initial state (foot positions, forces)
            mujoco.mj_setState(self._models[i], d, st[i], self._spec_state)
            mujoco.mj_forward(self._models[i], d)
            self._sensordata[i] = d.sensordata
        self._t[ids] = 0
        self._resample(ids, keep=0.0)
        self._phase[ids] = rng.uniform(0.0, 1.0, k)
        self._action[ids] = 0.0
        self._pending[ids] = 0.0
        self._down[ids] = True
        self._air[ids] = 0.0
        if r is not None:
            self._delay[ids] = rng.random(k) < r.latency_probability
            self._calibration[ids] = rng.uniform(-r.calibration, r.calibration, (k, nj))
            self._gyro_bias[ids] = rng.uniform(-r.gyro_bias, r.gyro_bias, (k, 3))
            self._push_at[ids] = rng.uniform(0.5, 1.0, k) * r.push_interval_s

    def _resample(self, ids: np.ndarray, keep: float = 0.5) -> None:
        if ids.size == 0:
            return
        s, rng, k = self.task, self._rng, ids.size
        hi = np.asarray(s.command_max)
        lo = np.array([s.command_min_vx, -hi[1], -hi[2]])
        fresh = rng.uniform(lo, hi, (k, 3)) * (rng.random((k, 3)) < np.asarray(s.command_probability))
        fresh *= (rng.random(k) >= s.stand_probability)[:, None]
        kept = rng.random((k, 3)) < keep
        self._command[ids] = np.where(kept, self._command[ids], fresh)
        self._until[ids] = rng.exponential(s.command_resample_s, k)

    def action_map(self) -> tuple[np.ndarray, np.ndarray]:
        """``(center, half_range)`` of the joint position targets [rad] (see ``LocomotionEnv.action_map``)."""
        return self._stand.copy(), np.full(self.n_joints, self.task.action_scale)

    def pin_variants(self, variants) -> None:
        """Env ``i`` always runs model variant ``variants[i]`` (evaluation on fixed reality samples); from the next
        reset of each env on.
        """
        v = np.asarray(variants, dtype=np.int64)
        if v.shape != (self.num_envs,) or v.min() < 0 or v.max() >= len(self._variants):
            raise ValueError(f"pin_variants: need {self.num_envs} indices in [0, {len(self._variants)}), got {v}")
        self._pinned = v

    def episode_sample(self, env: int = 0) -> dict[str, Any]:
        """The randomization sample of env ``env``'s current episode, to run it outside this batched env (the ROS
        sim): ``model`` (its model variant, a copy), ``variant`` (index), ``calibration`` (n_j,) encoder zero
        offsets [rad], ``gyro_bias`` (3,) [rad/s], ``latency_steps`` (0 or 1 control period), ``stand_height``
        (base height [m] with the feet on the floor in the standing pose) and ``randomization`` (the
        ``LocomotionRandomization``, None when off: noise levels, pushes).
        """
        i = int(env)
        return {"model": copy.copy(self._models[i]), "variant": int(self._variant[i]),
                "calibration": self._calibration[i].copy(), "gyro_bias": self._gyro_bias[i].copy(),
                "latency_steps": int(self._delay[i]), "stand_height": float(self._stand_height),
                "randomization": self.randomization}

    def set_command(self, command, hold_s: float = math.inf) -> None:
        """Set every env's command (vx, vy [m/s], yaw rate [rad/s]) and keep it for ``hold_s`` seconds."""
        self._command[:] = np.broadcast_to(np.asarray(command, dtype=np.float64), (self.num_envs, 3))
        self._until[:] = hold_s

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | list | None = None, options: dict | None = None):
        if seed is not None:
            self._rng = np.random.default_rng(seed if np.isscalar(seed) else list(seed))
            self._variants = make_variants(self.model, self.profile, self.task, self.randomization, self._rng)
        self._reset_rows(np.arange(self.num_envs))
        if options and "command" in options:  # start with this command held (log replay, scripted evaluation)
            self.set_command(options["command"])
        return self._observe(), {}

    def _measure(self):
        """Measured quantities of the current state (with sensor noise and calibration offsets if randomized)."""
        m, st = self.model, self._state
        qpos = st[:, self._qpos0:self._qpos0 + m.nq]
        qvel = st[:, self._qvel0:self._qvel0 + m.nv]
        gyro = qvel[:, 3:6]  # a free joint's angular velocity is in the body frame: what the IMU measures
        grav = gravity_in_frame(qpos[:, 3:7])
        q = qpos[:, self._jq] - self._stand
        qd = qvel[:, self._jv]
        r = self.randomization
        if r is not None:
            rng, n = self._rng, self.num_envs
            gyro = gyro + self._gyro_bias + r.gyro_noise * rng.standard_normal((n, 3))
            grav = grav + r.gravity_noise * rng.standard_normal((n, 3))
            grav /= np.linalg.norm(grav, axis=1, keepdims=True)
            q = q + self._calibration + r.joint_pos_noise * rng.standard_normal(q.shape)
            qd = qd + r.joint_vel_noise * rng.standard_normal(qd.shape)
        return gyro, grav, q, qd

    def privileged(self) -> np.ndarray:
        """``(N, privileged_size)`` float32 true base velocity (base frame) [m/s] and height [m] of the current
        state (the state the last returned observation came from; ``infos["final_privileged"]`` holds those of
        envs that ended).
        """
        st = self._state
        rot = rotation_matrices(st[:, self._qpos0 + 3:self._qpos0 + 7])
        lin_vel = np.einsum("nji,nj->ni", rot, st[:, self._qvel0:self._qvel0 + 3])
        return np.concatenate([lin_vel, st[:, self._qpos0 + 2:self._qpos0 + 3]], axis=1, dtype=np.float32)

    def _observe(self) -> np.ndarray:
        gyro, grav, q, qd = self._measure()
        return locomotion_observation(gyro, grav, q, qd, self._action, self._command, self._phase)

    def step(self, actions):
        s, _m, r, n = self.task, self.model, self.randomization, self.num_envs
        a = np.clip(np.asarray(actions, dtype=np.float64).reshape(n, self.n_joints), -1.0, 1.0)
        finite = np.isfinite(a).all(axis=1)
        a = np.where(finite[:, None], a, 0.0)
        applied = np.where(self._delay[:, None], self._pending, a) if r is not None else a
        target = self._stand + s.action_scale * applied
        if r is not None:  # the robot tracks targets in its (offset) encoder coordinates
            target = target - self._calibration
        self._ctrl[:] = target[:, None, :]
        self._pending = a
        if r is not None and r.push_velocity > 0:
            due = np.flatnonzero(self._t * self.dt >= self._push_at)
            if due.size:
                kick = self._rng.uniform(-r.push_velocity, r.push_velocity, (due.size, 2))
                self._state[due, self._qvel0:self._qvel0 + 2] += kick
                self._push_at[due] += r.push_interval_s
        prev_foot_vel = self._sensordata[:, self._sensor_block(f"{s.feet[0]}_vel", self._feet, 3)].copy()
        time_before = self._state[:, 0].copy()
        self._physics()
        self._t += 1
        self._until -= self.dt
        self._resample(np.flatnonzero(self._until <= 0.0))
        self._phase = (self._phase + s.gait_hz * self.dt) % 1.0
        # MuJoCo resets a diverged state silently (mj_step's bad-qpos/qvel/qacc check) and the rollout reports no
        # warnings: the physics time going back instead of forward by one control period is how it shows.
        reset_by_mujoco = self._state[:, 0] < time_before + 0.5 * self.dt
        values, fell, physics_error = self._inputs(a, prev_foot_vel)
        physics_error |= reset_by_mujoco
        reward = np.zeros(n)
        for k, t in enumerate(s.reward):
            v = np.asarray(t.fn(**{name: values[name] for name in t.arguments}), dtype=np.float64)
            self._term_sums[k] += float(np.mean(v)) * t.weight
            reward += t.weight * v
        self._term_count += 1
        self._track_sums += (float(np.mean(np.linalg.norm(values["lin_vel"][:, :2] - self._command[:, :2], axis=1))),
                             float(np.mean(np.abs(values["ang_vel"][:, 2] - self._command[:, 2]))))
        if s.reward_floor is not None:
            reward = np.maximum(reward, s.reward_floor)
        reward[physics_error] = 0.0
        self._action = a
        terminated = fell | physics_error | ~finite
        truncated = (self._t >= self.max_episode_steps) & ~terminated
        obs = self._observe()
        infos: dict = {}
        done = terminated | truncated
        self._falls_steps += (int(np.count_nonzero(fell & ~physics_error)), n)
        if done.any():
            ids = np.flatnonzero(done)
            infos["final_obs"] = obs.copy()
            infos["_final_obs"] = done.copy()
            infos["final_privileged"] = self.privileged()
            infos["physics_error"] = physics_error
            self._reset_rows(ids)
            obs[ids] = self._observe()[ids]
        return obs, reward.astype(np.float32), terminated, truncated, infos

    def _physics(self) -> None:
        """One control period of every env on MuJoCo's rollout thread pool. Envs are passed grouped by model variant,
        so consecutive envs of a thread's chunk share one model (it stays in cache); results do not depend on the
        order (the rollout starts every env from its own state, tests/envs/test_locomotion.py).
        """
        if self._order is None:
            self._order = np.argsort(self._variant, kind="stable")
            self._sorted_models = [self._variants[v] for v in self._variant[self._order]]
        o = self._order
        self._pool.rollout(self._sorted_models, self._datas, self._state[o], self._ctrl[o],
                           nstep=self.task.frame_skip, state=self._out_state, sensordata=self._out_sensor,
                           skip_checks=True)
        self._state[o] = self._out_state[:, -1]
        self._sensordata[o] = self._out_sensor[:, -1]

    def _inputs(self, action: np.ndarray, prev_foot_vel: np.ndarray):
        s, m, st, sd = self.task, self.model, self._state, self._sensordata
        nf = self._feet
        qpos = st[:, self._qpos0:self._qpos0 + m.nq]
        qvel = st[:, self._qvel0:self._qvel0 + m.nv]
        physics_error = ~np.isfinite(st).all(axis=1)
        if physics_error.any():
            st[physics_error] = 0.0
            qpos[physics_error, 3] = 1.0
        quat = qpos[:, 3:7]
        grav = gravity_in_frame(quat)
        # world -> base rotation of the linear velocity: R^T v
        rot = rotation_matrices(quat)
        lin_vel = np.einsum("nji,nj->ni", rot, qvel[:, 0:3])
        foot_pos = sd[:, self._sensor_block(f"{s.feet[0]}_pos", nf, 3)].reshape(-1, nf, 3)
        foot_vel = sd[:, self._sensor_block(f"{s.feet[0]}_vel", nf, 3)].reshape(-1, nf, 3)
        force = sd[:, self._sensor_block(f"{s.feet[0]}_force", nf, 1)]
        torque = sd[:, self._sensor_block(f"{self.profile.command_joints[0]}_torque", self.n_joints, 1)]
        down = force > 0.0
        touchdown = down & ~self._down
        air_time = np.where(touchdown, self._air + self.dt, 0.0)
        self._air = np.where(down, 0.0, self._air + self.dt)
        self._down = down
        mov = moving(self._command).astype(np.float64)
        swing = np.sin(2 * np.pi * (self._phase[:, None] + self._offsets)) * mov[:, None]
        tilt_cos = -grav[:, 2]
        fell = (tilt_cos < math.cos(s.fall_tilt)) | (qpos[:, 2] < s.fall_height)
        prev = prev_foot_vel.reshape(-1, nf, 3)
        values = {
            "lin_vel": lin_vel, "ang_vel": qvel[:, 3:6], "gravity": grav, "base_height": qpos[:, 2],
            "height_error": qpos[:, 2] - self._stand_height,
            "base_vz": qvel[:, 2], "command": self._command, "moving": mov,
            "joint_pos": qpos[:, self._jq] - self._stand, "joint_vel": qvel[:, self._jv],
            "joint_lower": self._lower, "joint_upper": self._upper, "torque": torque, "action": action,
            "last_action": self._action, "foot_height": foot_pos[:, :, 2] - s.foot_radius, "foot_force": force,
            "foot_slip": np.sum(foot_vel[:, :, :2] ** 2, axis=2), "touchdown": touchdown.astype(np.float64),
            "landing_speed": touchdown * np.sum(prev ** 2, axis=2), "air_time": air_time, "swing": swing,
            "fell": fell.astype(np.float64),
        }
        return values, fell, physics_error

    def pop_train_stats(self) -> dict[str, float]:
        """Since the last call (for training logs): the mean per-step weighted value of each reward term
        (``reward/<term>``), the mean planar-velocity and yaw-rate tracking errors (``tracking/lin_vel_error`` [m/s],
        ``tracking/yaw_rate_error`` [rad/s]) and the falls per full-length episode of walking (``fall_rate``: falls
        x ``max_episode_steps`` / env steps; the envs start together, so counting ended episodes would mostly count
        falls between the synchronized time limits).
        """
        if not self._term_count:
            return {}
        k = self._term_count
        out = {f"reward/{name}": float(v) / k for name, v in zip(self._term_names, self._term_sums)}
        out["tracking/lin_vel_error"] = float(self._track_sums[0]) / k
        out["tracking/yaw_rate_error"] = float(self._track_sums[1]) / k
        falls, steps = self._falls_steps
        out["fall_rate"] = float(falls * self.max_episode_steps / steps)
        self._term_sums[:] = 0.0
        self._track_sums[:] = 0.0
        self._falls_steps[:] = 0
        self._term_count = 0
        return out

    # ------------------------------------------------------------------ inspection
    def base_state(self) -> dict[str, np.ndarray]:
        """True base position (N, 3) [m], linear velocity in the base frame (N, 3) [m/s] and yaw rate (N,)."""
        m, st = self.model, self._state
        qpos, qvel = st[:, self._qpos0:self._qpos0 + m.nq], st[:, self._qvel0:self._qvel0 + m.nv]
        rot = rotation_matrices(qpos[:, 3:7])
        return {"position": qpos[:, :3].copy(), "lin_vel": np.einsum("nji,nj->ni", rot, qvel[:, :3]),
                "yaw_rate": qvel[:, 5].copy(), "command": self._command.copy()}

    def visual_scene(self, env: int = 0):
        """``(model, data)`` with Unitree's visual meshes, in env ``env``'s current state (for rendering: the
        training model has no meshes).
        """
        if self._render_model is None:
            self._render_model = self.profile.load_model(visual=True, joint_friction=False, edit=self._add_sensors)
            self._render_data = mujoco.MjData(self._render_model)
        mujoco.mj_setState(self._render_model, self._render_data, self._state[env], self._spec_state)
        mujoco.mj_forward(self._render_model, self._render_data)
        return self._render_model, self._render_data

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        model, data = self.visual_scene()
        if self._renderer is None:
            self._renderer = mujoco.Renderer(model, 240, 320)
        self._renderer.update_scene(data, camera="scene/track")
        return self._renderer.render()

    def close_extras(self, **kwargs) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        if self._pool is not None:
            self._pool.close()
            self._pool = None
