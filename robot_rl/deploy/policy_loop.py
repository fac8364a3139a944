"""The policy node's control step without ROS: joint states -> observation -> policy -> safety filter -> command.

Every joint-state message goes through ``SafetyFilter.on_joint_state``; the observation is built only from the
filter's last *accepted* state (profile joint order) with the env's ``ObservationBuilder``, so the robot sees the
observation the policy was trained on. Every command goes through ``SafetyFilter.filter``. Times are steady-clock
seconds passed in by the caller. An optional dynamics monitor (``robot_rl.export.monitor.DynamicsMonitor``) scores
every control period's transition; on its alarm the loop latches the e-stop (``monitor_action="estop"``), only
reports it (``"warn"``), or hands the robot to a fallback controller (``"fallback"``: from then on the commands are
another controller's, e.g. mpc_node's published on its own topic, fed in with ``set_fallback_command`` and passed
through this loop's safety filter; a fallback that has sent nothing for ``fallback_timeout_s`` latches the e-stop).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from robot_rl.deploy.latency import LatencyStats

MONITOR_ACTIONS = ("estop", "warn", "fallback")


class PolicyLoop:
    """One robot's control step.

    Args:
        safety: ``robot_rl.safety.SafetyFilter`` of the robot profile.
        obs_builder: ``robot_rl.envs.obs.ObservationBuilder`` (joint names must be the profile's, in order).
        policy: ``policy(obs) -> action``; obs float32 ``(n_obs,)``, action ``(n_cmd,)`` in robot command units.
        goal: initial goal ``(goal_dim,)`` for goal-conditioned policies (None when ``goal_dim`` is 0).
        control_period_s: period of ``step`` calls [s]; latencies above it count as deadline misses.
        policy_errors: exception types of the policy that mean "no valid action this step" (e.g. the runtime's
            non-finite output error): the step outputs the safe command and counts it in ``policy_errors``.
        monitor: ``update(q, qd, stamp_s, command) -> score`` / ``alarm`` / ``threshold`` (a ``DynamicsMonitor``),
            fed the accepted joint state and the command of every step that used a new sample in normal mode.
        monitor_action: ``"estop"`` (the alarm latches the e-stop: the safe command goes out from this step on),
            ``"warn"`` (the alarm is only reported, ``monitor_alarm``) or ``"fallback"`` (from the next step on the
            command is the fallback controller's latest, ``set_fallback_command``; none within
            ``fallback_timeout_s`` of the step latches the e-stop).
        fallback_timeout_s: after the hand-over, the oldest fallback command [s of steady time] still used.
        hold_without_goal: a goal-conditioned policy may start without a goal (position robots): until
            ``set_goal`` accepts one, the policy does not run and the command holds the measured position of the
            first step (through the safety filter like any command); ``holding`` says so.

    """

    def __init__(self, safety, obs_builder, policy: Callable[[np.ndarray], np.ndarray], *,
                 goal: Sequence[float] | None = None, control_period_s: float,
                 policy_errors: tuple[type[BaseException], ...] = (), hold_without_goal: bool = False,
                 monitor=None, monitor_action: str = "estop", fallback_timeout_s: float = 0.06):
        if tuple(obs_builder.joint_names) != tuple(safety.joint_names):
            raise ValueError(f"observation builder joints {list(obs_builder.joint_names)} differ from the robot "
                             f"profile's {list(safety.joint_names)}")
        self.safety = safety
        self.obs_builder = obs_builder
        self.policy = policy
        self.goal_dim = int(obs_builder.goal_dim)
        self.goal: np.ndarray | None = None
        self._hold: np.ndarray | None = None
        if self.goal_dim and hold_without_goal and (goal is None or len(goal) == 0):
            if safety.interface != "position":
                raise ValueError(f"holding without a goal needs a position interface, not {safety.interface!r}; "
                                 f"give an initial goal of {self.goal_dim} values")
        elif self.goal_dim:
            if goal is None or len(goal) != self.goal_dim:
                raise ValueError(f"goal-conditioned policy needs an initial goal of {self.goal_dim} values, "
                                 f"got {None if goal is None else list(goal)}")
            if not self.set_goal(goal):
                raise ValueError(f"initial goal must be finite, got {list(goal)}")
        self.control_period_s = float(control_period_s)
        self.latency = LatencyStats("sensor receive -> command publish", deadline_s=self.control_period_s)
        self.compute = LatencyStats("observation + policy + safety compute", deadline_s=self.control_period_s)
        self.command = np.zeros(safety.n_cmd)
        self._nan = np.full(safety.n_cmd, np.nan)
        self._rx_s: float | None = None
        self._stamp_s = 0.0
        self._fresh = False
        self.goals_rejected = 0
        self._policy_error_types = tuple(policy_errors)
        self.policy_errors = 0
        self.last_policy_error = ""
        self.steps = 0
        if monitor_action not in MONITOR_ACTIONS:
            raise ValueError(f"monitor_action must be one of {', '.join(MONITOR_ACTIONS)}, got {monitor_action!r}")
        if not fallback_timeout_s > 0:
            raise ValueError(f"fallback_timeout_s must be > 0, got {fallback_timeout_s}")
        self.monitor = monitor
        self.monitor_action = monitor_action
        self.monitor_alarm = ""
        """Why the monitor raised its alarm (empty while it has not)."""
        self.fallback_active = False
        """True from the monitor's alarm on with ``monitor_action="fallback"``: the fallback controller commands."""
        self.fallback_timeout_s = float(fallback_timeout_s)
        self.fallback_commands = 0
        self.fallback_rejected = 0
        self._fallback = np.full(safety.n_cmd, np.nan)
        self._fallback_rx_s = -math.inf

    def on_joint_state(self, names, positions, velocities, efforts, stamp_s: float, now_s: float,
                       clock_s: float | None = None) -> bool:
        """Feed one ``/joint_states`` message (see ``SafetyFilter.on_joint_state``); True if accepted."""
        ok = self.safety.on_joint_state(names, positions, velocities, efforts, stamp_s, now_s, clock_s=clock_s)
        if ok:
            self._rx_s, self._stamp_s, self._fresh = now_s, stamp_s, True
        return ok

    def set_fallback_command(self, values: Sequence[float], now_s: float) -> bool:
        """The fallback controller's latest command ``(n_cmd,)`` received at ``now_s``; refused (counted) when its
        length is wrong or a value is non-finite. Kept before the hand-over too, so it is current at the alarm.
        """
        if len(values) != len(self._fallback) or not all(math.isfinite(v) for v in values):
            self.fallback_rejected += 1
            return False
        self._fallback[:] = values
        self._fallback_rx_s = now_s
        self.fallback_commands += 1
        return True

    def set_goal(self, values: Sequence[float]) -> bool:
        """New goal ``(goal_dim,)``; refused (counted, previous goal kept) if the length is wrong or non-finite."""
        g = np.asarray(values, dtype=np.float64)
        if g.shape != (self.goal_dim,) or not all(math.isfinite(v) for v in g):
            self.goals_rejected += 1
            return False
        self.goal = g
        return True

    def step(self, now_s: float):
        """Compute the command for now: returns ``(command float64 (n_cmd,), SafetyStatus, used_fresh_state)``.

        The policy runs only while the safety filter is in normal mode; otherwise the filter's safe command goes
        out (``filter`` decides, so a stale sensor is caught at this call).
        """
        self.steps += 1
        safety = self.safety
        action = self.command  # ignored by the filter unless mode is normal
        if safety.mode == "normal" and self.goal_dim and self.goal is None:
            if self._hold is None:  # latched: holding re-reading the sagging measurement would creep
                self._hold = safety.safe_command(now_s)
            action = self._hold
        elif safety.mode == "normal" and self.fallback_active:
            action = self._fallback_action(now_s)
        elif safety.mode == "normal":
            obs = self.obs_builder.build(safety.position, safety.velocity, self.goal)
            try:
                action = self.policy(obs)
            except self._policy_error_types as exc:
                self.policy_errors += 1
                self.last_policy_error = str(exc)
                action = self._nan  # the filter turns a non-finite command into the safe command (and counts it)
        command, status = safety.filter(action, now_s, out=self.command)
        fresh = self._fresh  # the command (policy or safe) follows a newly accepted sample
        self._fresh = False
        if self.monitor is not None and fresh and status.mode == "normal":
            score = self.monitor.update(safety.position, safety.velocity, self._stamp_s, command)
            if self.monitor.alarm and not self.monitor_alarm:
                self.monitor_alarm = (f"dynamics monitor: windowed surprise {score:.3g} above its threshold "
                                      f"{self.monitor.threshold:.3g}: the robot does not behave like the simulator "
                                      f"the policy was trained in")
                if self.monitor_action == "estop":
                    safety.estop(self.monitor_alarm)
                    command, status = safety.filter(action, now_s, out=self.command)
                elif self.monitor_action == "fallback":  # from the next step on (this step's command is out)
                    self.fallback_active = True
        return command, status, fresh

    def _fallback_action(self, now_s: float) -> np.ndarray:
        """The fallback controller's command for now; latches the e-stop when it is older than the timeout."""
        age = now_s - self._fallback_rx_s
        if age > self.fallback_timeout_s:
            safety = self.safety
            safety.estop("fallback controller silent: " + ("no command received" if math.isinf(age) else
                                                           f"last command {age:.3f} s ago") +
                         f" (timeout {self.fallback_timeout_s:g} s) after the dynamics monitor's hand-over")
        return self._fallback

    @property
    def holding(self) -> bool:
        """True while a goal-conditioned policy has no goal yet (the command holds position)."""
        return bool(self.goal_dim) and self.goal is None

    def record_publish(self, publish_s: float, start_s: float, fresh: bool) -> None:
        """After publishing: record compute time, and sensor->publish latency when the command used new data."""
        self.compute.add(publish_s - start_s)
        if fresh and self._rx_s is not None:
            self.latency.add(publish_s - self._rx_s)

    @property
    def last_rx_s(self) -> float:
        """Steady-clock receive time [s] of the last accepted joint-state message (-inf before the first)."""
        return -math.inf if self._rx_s is None else self._rx_s

    @property
    def last_stamp_s(self) -> float:
        """Header stamp [s] of the joint-state message the last command was computed from."""
        return self._stamp_s


class SensorGate:
    """When a sensor-triggered node acts: on the first joint-state message at or after each control-period boundary.

    Acting in the message's callback keeps the sensor-to-command latency at the compute time (a free-running timer
    adds up to one period of phase waiting); the gate decimates a faster sensor stream (e.g. joint states every
    0.01 s, control period 0.02 s) to one action per period. The boundaries form a grid that starts at the first
    message and is phase-locked to the messages acted on (each boundary moves by ``gain`` times the arrival error,
    at most ``slack_s``), so arrival jitter does not alternate the action between two messages. A message up to
    ``slack_s`` (half the sensor period, at most half the control period) before a boundary counts as at the
    boundary. After a gap of more than a period the grid starts again at the next message (no burst of actions).
    Times are steady-clock seconds. The node's stale-sensor watchdog stays on a timer: no message, no action here.
    """

    def __init__(self, period_s: float, sensor_period_s: float, gain: float = 0.1):
        if period_s <= 0:
            raise ValueError(f"period_s must be > 0, got {period_s}")
        self.period_s = float(period_s)
        sensor = float(sensor_period_s) if sensor_period_s and sensor_period_s > 0 else self.period_s
        self.slack_s = 0.5 * min(sensor, self.period_s)
        self.gain = float(gain)
        self._due_s = -math.inf

    def due(self, now_s: float) -> bool:
        """Call for every joint-state message received at ``now_s``; True when the node acts on this one."""
        if now_s < self._due_s - self.slack_s:
            return False
        error = now_s - self._due_s
        if error >= self.period_s:  # the first message, or after a gap of more than a period: a new grid from here
            self._due_s = now_s + self.period_s
        else:
            self._due_s += self.period_s + self.gain * min(error, self.slack_s)
        return True


class GoalInputBuilder:
    """Policy input of a goal-conditioned (dict-observation) task: ``concat(observation, desired_goal)``.

    The training contract (docs/contracts.md, ``robot_rl.scale.envs``): the flat input is the env's observation
    followed by the desired goal, named ``desired_goal[i]``. ``builder`` builds the observation part from the joints.
    """

    def __init__(self, builder, goal_dim: int):
        self.builder = builder
        self.joint_names = builder.joint_names
        self.terms = builder.terms
        self.goal_dim = int(goal_dim)
        self.names = tuple(builder.names) + tuple(f"desired_goal[{i}]" for i in range(self.goal_dim))

    def build(self, positions, velocities, goal) -> np.ndarray:
        """float32 ``(n_obs + goal_dim,)``; ``goal`` shape ``(goal_dim,)``."""
        return np.concatenate([self.builder.build(positions, velocities),
                               np.asarray(goal, dtype=np.float32)]).astype(np.float32, copy=False)
