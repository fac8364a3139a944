"""The physics behind the ``sim_robot`` node, without ROS: a MuJoCo model acting like a ros2_control robot.

It behaves like a forward command controller on real hardware: a command (robot units, ``command_joints`` order)
is applied ``latency_s`` after it arrives and held until the next one; if no command arrives for
``command_timeout_s`` (steady clock) the safe command (zero effort / hold position / zero velocity) is applied
until commands resume (docs/reliability.md, scenario 8). Measurements carry optional Gaussian noise. Time is
whatever the caller passes as ``now_s`` (the node passes ``time.monotonic()``), so tests can drive it
deterministically.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np


class SimPlant:
    """MuJoCo model + data stepped in real time by the caller.

    Args:
        profile: ``RobotProfile`` (joint names, command joints, command interface, command limits).
        model, data: ``mujoco.MjModel`` / ``mujoco.MjData`` (already randomized if wanted).
        latency_s: delay between a command's arrival and its application [s].
        position_noise_std, velocity_noise_std: std of Gaussian measurement noise [rad or m, rad/s or m/s].
        command_timeout_s: no command for this long -> safe command [s].
        rng: ``np.random.Generator`` for the noise.
        hold_until_first_command: keep the initial state (physics not stepped) until the first command arrives,
            like a robot whose controller is activated when the commander connects.
        reality: optional ``EnvReality`` (held-out randomization sample of an env: pushes, parameter drift,
            sensor bias and noise, and the task reward), driven once per env control step, or a legged task's
            ``robot_rl.deploy.legged_reality.LeggedReality`` (also the IMU's bias and noise).

    Robots with an IMU (``profile.imu_site`` on a floating base) also give ``measure_imu`` (orientation, angular
    velocity, accelerometer) and ``base_state`` (the true base pose and velocity, for tests and evaluation); arms
    with an ``ee_site`` give ``ee_position`` (the true tool centre point in the base frame).

    """

    def __init__(self, profile, model, data, *, latency_s: float = 0.0, position_noise_std: float = 0.0,
                 velocity_noise_std: float = 0.0, command_timeout_s: float = 0.1,
                 rng: np.random.Generator | None = None, reality: EnvReality | None = None,
                 hold_until_first_command: bool = False):
        import mujoco

        self._mj = mujoco
        self.profile, self.model, self.data = profile, model, data
        self.latency_s = float(latency_s)
        self.position_noise_std = float(position_noise_std)
        self.velocity_noise_std = float(velocity_noise_std)
        self.command_timeout_s = float(command_timeout_s)
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.reality = reality
        self.hold_until_first_command = bool(hold_until_first_command)
        self.joint_names = profile.joint_names
        self._qadr, self._dadr = [], []
        for name in self.joint_names:
            jid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)
            if jid < 0:
                raise KeyError(f"profile joint {name!r} is not in the MJCF {profile.mjcf}")
            self._qadr.append(int(model.jnt_qposadr[jid]))
            self._dadr.append(int(model.jnt_dofadr[jid]))
        from robot_rl.core.profile import actuator_for_joint

        self._act = np.array([actuator_for_joint(model, n) for n in profile.command_joints], dtype=np.intp)
        self._cmd_qpos = np.array([self._qadr[self.joint_names.index(n)] for n in profile.command_joints],
                                  dtype=np.intp)
        self._imu = self._find_imu(model, profile) if profile.imu_site else None
        self._ee = int(model.site(profile.ee_site).id) if profile.ee_site else -1
        self._base = int(model.body(profile.base_frame).id) if profile.base_frame else 0  # 0: the world body
        self.command_min = np.asarray(profile.command_min, dtype=np.float64)
        self.command_max = np.asarray(profile.command_max, dtype=np.float64)
        self._pending: deque[tuple[float, np.ndarray]] = deque()
        self._applied = self.safe_command()
        self._last_command_s: float | None = None
        self.timed_out = True
        """True while the safe command is applied because commands stopped (or never started)."""
        self.timeouts = 0
        """Number of transitions into the timed-out state after commands had started."""
        self.rejected = 0
        """Commands refused (wrong length or non-finite)."""
        self.reward = 0.0
        self.episode_return = 0.0
        self.steps = 0
        self.physics_warnings = 0
        self._t0: float | None = None

    # ------------------------------------------------------------------ state
    def set_initial_state(self, positions: Sequence[float] | None = None,
                          velocities: Sequence[float] | None = None) -> None:
        """Set joint positions / velocities (profile joint order) and recompute derived quantities."""
        if positions is not None:
            if len(positions) != len(self.joint_names):
                raise ValueError(f"initial positions need {len(self.joint_names)} values for joints "
                                 f"{list(self.joint_names)}, got {len(positions)}")
            self.data.qpos[self._qadr] = positions
        if velocities is not None:
            if len(velocities) != len(self.joint_names):
                raise ValueError(f"initial velocities need {len(self.joint_names)} values for joints "
                                 f"{list(self.joint_names)}, got {len(velocities)}")
            self.data.qvel[self._dadr] = velocities
        self._mj.mj_forward(self.model, self.data)
        if self._last_command_s is None:
            self._applied = self.safe_command()  # a position robot holds its initial pose until commands arrive

    def safe_command(self) -> np.ndarray:
        """Command a ros2_control robot falls back to: zero effort / velocity, or hold the current position."""
        if self.profile.command_interface == "position":
            return self.data.qpos[self._cmd_qpos].astype(np.float64)
        return np.zeros(len(self.profile.command_joints))

    @property
    def applied_command(self) -> np.ndarray:
        """Command currently driving the actuators (command units), a copy."""
        return self._applied.copy()

    # ------------------------------------------------------------------ inputs
    def on_command(self, values: Sequence[float], now_s: float) -> bool:
        """A ``Float64MultiArray`` command arrived at ``now_s``; returns False (and counts) if refused."""
        cmd = np.asarray(values, dtype=np.float64)
        if cmd.shape != (len(self.profile.command_joints),) or not np.all(np.isfinite(cmd)):
            self.rejected += 1
            return False
        # Actuators saturate like hardware does; the safety filter upstream should already have clamped.
        cmd = np.clip(cmd, self.command_min, self.command_max)
        if self.reality is not None:
            cmd = self.reality.actuate(cmd)  # e.g. targets tracked in offset encoder coordinates
        self._pending.append((now_s + self.latency_s, cmd))
        self._last_command_s = now_s
        return True

    # ------------------------------------------------------------------ time
    def advance(self, now_s: float, max_steps: int = 100) -> int:
        """Step physics until sim time catches up with ``now_s``; returns the number of steps taken.

        At most ``max_steps`` steps per call: if the host falls further behind, sim time slips instead of
        burning the CPU (the node reports the slip).
        """
        if self._t0 is None or (self.hold_until_first_command and self._last_command_s is None):
            self._t0 = now_s - self.data.time  # physics has not started: sim time stays at the initial state
        dt = self.model.opt.timestep
        steps = 0
        while self._t0 + self.data.time + 0.5 * dt <= now_s and steps < max_steps:
            t_step = self._t0 + self.data.time
            self._update_command(t_step)
            if self.reality is not None:
                self.reality.before_physics_step()
            self.data.ctrl[self._act] = self._applied
            warn_before = int(self.data.warning.number.sum())
            self._mj.mj_step(self.model, self.data)
            self.physics_warnings += int(self.data.warning.number.sum()) - warn_before
            if self.reality is not None:
                self.reality.after_physics_step(self._applied)
                self.reward = self.reality.reward
                self.episode_return = self.reality.episode_return
            steps += 1
        self.steps += steps
        if steps == max_steps:
            self._t0 = now_s - self.data.time  # slip: do not try to catch up what is lost
        return steps

    def _update_command(self, t: float) -> None:
        while self._pending and self._pending[0][0] <= t:
            self._applied = self._pending.popleft()[1]
        stale = self._last_command_s is None or (t - self._last_command_s) > self.command_timeout_s + self.latency_s
        if stale:
            if not self.timed_out and self._last_command_s is not None:
                self.timeouts += 1
            if not self.timed_out or self.profile.command_interface != "position":
                self._applied = self.safe_command()
            self._pending.clear()
        self.timed_out = stale

    # ------------------------------------------------------------------ outputs
    def measure(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Measured (positions, velocities, efforts), each shape ``(n_joints,)`` in profile joint order."""
        q = self.data.qpos[self._qadr].astype(np.float64)
        v = self.data.qvel[self._dadr].astype(np.float64)
        if self.reality is not None:
            q, v = self.reality.sense(q, v)
        if self.position_noise_std > 0:
            q = q + self.rng.normal(0.0, self.position_noise_std, q.shape)
        if self.velocity_noise_std > 0:
            v = v + self.rng.normal(0.0, self.velocity_noise_std, v.shape)
        effort = self.data.qfrc_actuator[self._dadr].astype(np.float64)
        return q, v, effort

    @staticmethod
    def _find_imu(model, profile):
        """(qpos address, dof address of the floating base, accelerometer sensordata address or -1)."""
        import mujoco

        from robot_rl.deploy.legged_reality import free_joint

        j = free_joint(model, profile)
        site = model.site(profile.imu_site).id
        acc = -1
        for i in range(model.nsensor):
            if model.sensor_type[i] == mujoco.mjtSensor.mjSENS_ACCELEROMETER and model.sensor_objid[i] == site:
                acc = int(model.sensor_adr[i])
        return int(model.jnt_qposadr[j]), int(model.jnt_dofadr[j]), acc

    def measure_imu(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Measured IMU ``(orientation w, x, y, z, angular velocity [rad/s], linear acceleration [m/s^2] or None)``:
        the floating base's orientation and body-frame angular velocity (the IMU site is fixed to the base with
        the base's axes), the accelerometer at the IMU site if the model has one.
        """
        if self._imu is None:
            raise ValueError(f"robot {self.profile.name!r} has no imu_site")
        qa, da, acc = self._imu
        quat = self.data.qpos[qa + 3:qa + 7].copy()
        gyro = self.data.qvel[da + 3:da + 6].copy()  # a free joint's angular velocity is in the body frame
        if self.reality is not None and hasattr(self.reality, "sense_imu"):
            quat, gyro = self.reality.sense_imu(quat, gyro)
        return quat, gyro, (self.data.sensordata[acc:acc + 3].copy() if acc >= 0 else None)

    def ee_position(self) -> np.ndarray:
        """True end-effector position (the profile's ``ee_site``) in the base frame (``base_frame``) [m] (3,)."""
        if self._ee < 0:
            raise ValueError(f"robot {self.profile.name!r} has no ee_site")
        d = self.data
        rel = d.site_xpos[self._ee] - d.xpos[self._base]
        return d.xmat[self._base].reshape(3, 3).T @ rel

    def base_state(self) -> tuple[np.ndarray, np.ndarray, float]:
        """True ``(base position [m], base linear velocity, world frame [m/s], tilt from upright [rad])``."""
        if self._imu is None:
            raise ValueError(f"robot {self.profile.name!r} has no imu_site (no floating base)")
        qa, da, _ = self._imu
        w, x, y, z = self.data.qpos[qa + 3:qa + 7]
        n2 = w * w + x * x + y * y + z * z
        cos_tilt = 1.0 - 2.0 * (x * x + y * y) / n2
        tilt = float(np.arccos(np.clip(cos_tilt, -1.0, 1.0)))
        return self.data.qpos[qa:qa + 3].copy(), self.data.qvel[da:da + 3].copy(), tilt


class EnvReality:
    """The held-out "reality" of a ``robot_rl.envs`` task driven at physics-step granularity.

    ``make(env_id, randomization=..., seed=...)`` already applied the episode's model parameters (masses, friction,
    damping, gains ...); this object adds what the env does per control step: interval re-sampling and pushes
    (``before_step`` every ``frame_skip`` physics steps), sensor bias and noise (``sense``), the task reward
    from ``reward_for`` once per control step (the env's own reward, the applied command normalized to [-1, 1] by
    the env's action map, delta targets relative to the joints at the start of the step),
    and, for arms whose env compensates gravity (``gravity_compensation``, e.g. ``PandaReach-v0``), the same
    nominal-model gravity torques as ``qfrc_applied`` before every physics step (the robot's controller does it
    at its servo rate; the env once per control step, to save time).
    ``action_latency_s`` is the sample's actuation delay [s] (its ``action_latency_steps`` x control period).
    """

    def __init__(self, env, rng: np.random.Generator):
        base = env.unwrapped
        self.base = base
        self.randomizer = base.randomizer if base.randomization_enabled else None
        self.rng = rng
        self.frame_skip = int(base.frame_skip)
        # the env's own action map (position envs): center + half_range x action, for delta targets added to the
        # measured joints; else the actuators' ctrlrange. The delta reference here is the true joint positions at
        # the start of the control step (the policy saw them through the sensor's noise and latency).
        self._ref_qadr = None
        if hasattr(base, "action_map"):
            self._mid, self._half = (np.asarray(v, dtype=np.float64) for v in base.action_map())
            if getattr(base, "action_reference", lambda: None)() is not None:
                m = base.model
                self._ref_qadr = np.array([m.jnt_qposadr[m.joint(j).id] for j in base.profile.command_joints])
                self._q_ref = np.zeros(len(self._ref_qadr))
        else:
            lo, hi = base.model.actuator_ctrlrange[:, 0], base.model.actuator_ctrlrange[:, 1]
            self._mid, self._half = (hi + lo) / 2.0, (hi - lo) / 2.0
        info = base.randomization_info
        self.sample = dict(info)
        """The sampled randomization values (flat dict, as in the env's ``info["randomization"]``)."""
        self.action_latency_s = int(info.get("action_latency_steps", 0)) * float(base.control_dt)
        self._substep = 0
        self._t = 0
        self._gravity = getattr(base, "gravity_compensation", None)
        self.reward = 0.0
        self._last_action = None  # the previous control step's action (for action-rate reward terms)
        self.episode_return = 0.0

    def before_physics_step(self) -> None:
        if self._substep == 0 and self._ref_qadr is not None:
            np.take(self.base.data.qpos, self._ref_qadr, out=self._q_ref)
        if self._substep == 0 and self.randomizer is not None:
            self.sample = self.randomizer.before_step(self._t, self.rng, self.sample)
        if self._gravity is not None:
            d = self.base.data
            d.qfrc_applied[:] = self._gravity(d.qpos)

    def after_physics_step(self, applied_command: np.ndarray) -> None:
        self._substep += 1
        if self._substep == self.frame_skip:
            self._substep = 0
            self._t += 1
            center = self._mid if self._ref_qadr is None else self._mid + self._q_ref
            action = np.clip((applied_command - center) / self._half, -1.0, 1.0)
            self.reward = self.base.reward_for(action, self._last_action)
            self._last_action = action
            self.episode_return += self.reward

    @property
    def steps(self) -> int:
        """Control steps since physics started (``episode_return`` sums their rewards)."""
        return self._t

    def actuate(self, command: np.ndarray) -> np.ndarray:
        return command

    def sense(self, q: np.ndarray, qd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.randomizer is None:
            return q, qd
        return self.randomizer.sense(q, qd, self.rng)
