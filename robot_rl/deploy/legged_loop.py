"""The policy node's control step for a legged velocity-tracking task (no ROS): joint states + IMU + velocity command
-> the observation of :mod:`robot_rl.core.legged_obs` (the function training used) -> policy -> safety filter.

* :func:`parse_sequence`: a scripted ``/cmd_vel`` (``cmd_vel_source``'s ``sequence``, ``robot-rl demo --robot go2``).
* :class:`VelocityCommand`: the ``/cmd_vel`` input: clipped to the task's command range, zero ("stand") when older
  than ``timeout_s``; non-finite commands are refused.
* :class:`LocomotionInputs`: builds the observation from the safety filter's last accepted joint state and IMU
  sample: IMU angular velocity, gravity in the IMU frame from its orientation (``gravity_in_frame``), joint positions
  minus the standing pose and velocities in command order, the previous normalized action, the command and the gait
  clock, whose phase advances by ``gait_hz`` x control period every control step as in ``LocomotionVecEnv``.
* :class:`LocomotionLoop`: ``PolicyLoop`` with these inputs; the previous action is the policy's output normalized
  back to [-1, 1] (``(target - center) / half_range``, clipped), or the normalized safe command when the safety
  filter overrode it.
"""

from __future__ import annotations

import math

import numpy as np

from robot_rl.core.legged_obs import gravity_in_frame, locomotion_observation, observation_names
from robot_rl.deploy.policy_loop import PolicyLoop


def parse_sequence(text: str) -> list[tuple[float, float, float, float]]:
    """``"vx vy yaw_rate seconds; ..."`` -> ``[(vx, vy, yaw_rate, seconds), ...]`` (commas also separate numbers)."""
    out = []
    for i, part in enumerate(p for p in text.split(";") if p.strip()):
        fields = part.replace(",", " ").split()
        try:
            values = [float(f) for f in fields]
        except ValueError:
            values = []
        if len(values) != 4 or not all(math.isfinite(v) for v in values) or values[3] <= 0:
            raise ValueError(f"parameter 'sequence', segment {i} {part.strip()!r}: expected 'vx vy yaw_rate seconds' "
                             "(finite numbers, seconds > 0)")
        out.append(tuple(values))
    return out


class VelocityCommand:
    """Velocity command (vx, vy [m/s], yaw rate [rad/s]) from ``/cmd_vel``, clipped to ``[low, high]``; zero when
    the last one is older than ``timeout_s`` (steady clock) or none arrived yet.
    """

    def __init__(self, low, high, timeout_s: float = 0.5):
        self.low = np.asarray(low, dtype=np.float64)
        self.high = np.asarray(high, dtype=np.float64)
        if self.low.shape != (3,) or self.high.shape != (3,) or np.any(self.low > self.high):
            raise ValueError(f"velocity command range: need 3 lows <= 3 highs, got {self.low} {self.high}")
        if not timeout_s > 0:
            raise ValueError(f"cmd_vel timeout must be > 0 [s], got {timeout_s}")
        self.timeout_s = float(timeout_s)
        self._low, self._high = self.low.tolist(), self.high.tolist()
        self.value = np.zeros(3)
        """The last accepted command after clipping."""
        self._rx_s = -math.inf
        self.received = self.clipped = self.refused = 0
        self.stale = True
        """True while the command in use is zero because no fresh one arrived."""

    def on_twist(self, vx: float, vy: float, yaw_rate: float, now_s: float) -> bool | None:
        """A command arrived at ``now_s``: None if refused (non-finite), else True when it was clipped."""
        self.received += 1
        v = (float(vx), float(vy), float(yaw_rate))
        if not all(math.isfinite(x) for x in v):
            self.refused += 1
            return None
        clipped = False
        for k in range(3):
            x = min(max(v[k], self._low[k]), self._high[k])
            clipped = clipped or x != v[k]
            self.value[k] = x
        self.clipped += clipped
        self._rx_s = float(now_s)
        return clipped

    def current(self, now_s: float, out: np.ndarray) -> np.ndarray:
        """The command to use at ``now_s`` written into ``out`` (zero when stale)."""
        self.stale = now_s - self._rx_s > self.timeout_s
        if self.stale:
            out[:] = 0.0
        else:
            out[:] = self.value
        return out


class LocomotionInputs:
    """Observation of a legged task from the safety filter's accepted measurements (``ObservationBuilder``-like:
    ``joint_names``, ``names``, ``goal_dim``).

    Args:
        safety: ``robot_rl.safety.SafetyFilter`` of the robot (its accepted joint state and IMU sample are used).
        standing_pose: joint positions the observation is relative to, command order [rad].
        center, half_range: the policy's action map (its output is ``center + half_range * a``) [rad].
        gait_hz: gait clock frequency of the task [Hz]; ``control_period_s``: the control period [s].

    """

    def __init__(self, safety, *, standing_pose, center, half_range, gait_hz: float, control_period_s: float):
        profile = safety.profile
        self.joint_names = safety.joint_names
        self.names = tuple(observation_names(profile.command_joints))
        self.goal_dim = 0
        self.safety = safety
        self._cmd_idx = np.array([self.joint_names.index(c) for c in profile.command_joints], dtype=np.intp)
        n = len(self._cmd_idx)
        self.standing = np.asarray(standing_pose, dtype=np.float64)
        self.center = np.asarray(center, dtype=np.float64)
        self.half_range = np.asarray(half_range, dtype=np.float64)
        for what, v in (("standing_pose", self.standing), ("center", self.center), ("half_range", self.half_range)):
            if v.shape != (n,):
                raise ValueError(f"{what} has {v.size} values, expected {n} for {list(profile.command_joints)}")
        if not np.all(self.half_range > 0):
            raise ValueError(f"half_range must be > 0, got {self.half_range.tolist()}")
        self.phase_step = float(gait_hz) * float(control_period_s)
        self.phase = 0.0
        self.command = np.zeros(3)
        """The velocity command of the next observation (set by the loop)."""
        self.last_action = np.zeros(n)
        self._q = np.zeros(n)
        self._qd = np.zeros(n)

    def build(self, positions, velocities, goal=None) -> np.ndarray:
        """The observation (float32, ``len(names)``) from profile-ordered ``positions``/``velocities``."""
        np.take(positions, self._cmd_idx, out=self._q)
        self._q -= self.standing
        np.take(velocities, self._cmd_idx, out=self._qd)
        s = self.safety
        return locomotion_observation(s.imu_angular_velocity, gravity_in_frame(s.imu_orientation), self._q, self._qd,
                                      self.last_action, self.command, self.phase)

    def advance(self, target: np.ndarray) -> None:
        """After a control step that sent (or computed) joint targets ``target`` [rad]: remember the normalized
        action and advance the gait clock.
        """
        a = self.last_action
        np.subtract(target, self.center, out=a)
        a /= self.half_range
        np.clip(a, -1.0, 1.0, out=a)
        a[~np.isfinite(a)] = 0.0
        self.phase = (self.phase + self.phase_step) % 1.0


class LocomotionLoop(PolicyLoop):
    """``PolicyLoop`` for a legged task: ``inputs`` (:class:`LocomotionInputs`) and ``velocity``
    (:class:`VelocityCommand`); ``step`` sets the command, builds the observation, runs the policy, filters.
    """

    def __init__(self, safety, inputs: LocomotionInputs, policy, velocity: VelocityCommand, *,
                 control_period_s: float, policy_errors=()):
        super().__init__(safety, inputs, policy, control_period_s=control_period_s, policy_errors=policy_errors)
        self.inputs = inputs
        self.velocity = velocity
        self._target = np.zeros(safety.n_cmd)

    def step(self, now_s: float):
        self.steps += 1
        safety, inputs = self.safety, self.inputs
        self.velocity.current(now_s, inputs.command)
        ran = False
        action = self.command
        if safety.mode == "normal":
            obs = inputs.build(safety.position, safety.velocity)
            try:
                action = self.policy(obs)
                ran = True
            except self._policy_error_types as exc:
                self.policy_errors += 1
                self.last_policy_error = str(exc)
                action = self._nan
        if ran:
            self._target[:] = action
        command, status = safety.filter(action, now_s, out=self.command)
        inputs.advance(self._target if ran and not status.safe else command)
        fresh = self._fresh
        self._fresh = False
        return command, status, fresh
