"""A legged velocity-tracking task as a declaration: :class:`LocomotionSpec` (robot, feet, commands, gait clock,
named weighted reward terms over the inputs in :data:`INPUTS`) and its domain randomization
(:class:`LocomotionRandomization`). :mod:`robot_rl.envs.locomotion` runs it; docs/robots.md documents the Go2's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from robot_rl.envs.task import Term

INPUTS = {
    "lin_vel": "(N, 3) base linear velocity, base frame [m/s] (privileged: the reward sees it, the policy does not)",
    "ang_vel": "(N, 3) base angular velocity, base frame [rad/s] (the IMU gyro, without its noise)",
    "gravity": "(N, 3) unit gravity direction in the base frame (upright: 0 0 -1)",
    "base_height": "(N,) base height above the floor [m]",
    "height_error": "(N,) base height minus its height standing in the standing pose on the floor [m]",
    "base_vz": "(N,) vertical base velocity, world frame [m/s]",
    "command": "(N, 3) commanded vx, vy [m/s], yaw rate [rad/s]",
    "moving": "(N,) float, 1 where the command is not 'stand still'",
    "joint_pos": "(N, n_j) joint positions minus the standing pose [rad]",
    "joint_vel": "(N, n_j) joint velocities [rad/s]",
    "joint_lower": "(n_j,) lower joint limits minus the standing pose [rad]",
    "joint_upper": "(n_j,) upper joint limits minus the standing pose [rad]",
    "torque": "(N, n_j) actuator torques [N m]",
    "action": "(N, n_j) the action (normalized, clipped to [-1, 1])",
    "last_action": "(N, n_j) the previous action",
    "foot_height": "(N, n_f) foot sphere bottom above the floor [m]",
    "foot_force": "(N, n_f) normal contact force on each foot [N]",
    "foot_slip": "(N, n_f) squared horizontal foot speed [m^2/s^2]",
    "touchdown": "(N, n_f) float, 1 on the step a foot lands",
    "landing_speed": "(N, n_f) squared foot speed just before the step (nonzero with touchdown) [m^2/s^2]",
    "air_time": "(N, n_f) time the foot was in the air before this step's touchdown (0 otherwise) [s]",
    "swing": "(N, n_f) gait schedule: sin(2 pi (clock + offset)), >0 swing, <0 stance; 0 while standing still",
    "fell": "(N,) float, 1 where the robot fell (terminates the episode)",
}


@dataclass(frozen=True)
class LocomotionSpec:
    """Declaration of a legged velocity-tracking task (see module docstring)."""

    name: str
    robot: str
    """Robot profile (``hardware/<robot>.yaml``): position interface, kp/kd, standing pose, IMU site."""
    frame_skip: int
    """Physics steps per control step (``frame_skip * timestep`` must equal the profile's control period)."""
    max_episode_steps: int
    feet: tuple[str, ...]
    """Foot bodies, each holding a contact sphere at its origin (a touch site and frame sensors are added)."""
    foot_radius: float
    reward: tuple[Term, ...]
    action_scale: float = 0.5
    """Joint position offset [rad] of a unit action."""
    command_max: tuple[float, float, float] = (1.0, 0.5, 1.0)
    """Commands are drawn uniformly in [-max, max] per axis (vx, vy [m/s], yaw rate [rad/s])."""
    command_min_vx: float = -0.5
    """Lower bound of the forward command (walking backwards is slower)."""
    command_probability: tuple[float, float, float] = (0.9, 0.3, 0.5)
    """Chance that each axis is nonzero when a command is drawn (else 0: the robot also learns to stand and to
    walk straight)."""
    stand_probability: float = 0.1
    """Chance that a drawn command is zero on every axis (stand still: the robot must also stand well)."""
    command_resample_s: float = 5.0
    """Mean time between command redraws (exponential) [s]."""
    gait_hz: float = 2.0
    gait_offsets: tuple[float, ...] = (0.0, 0.5, 0.5, 0.0)
    """Gait clock offset of each foot (a trot: diagonal pairs together)."""
    reward_floor: float | None = 0.0
    """The reward is max(sum of terms, floor) (None: no floor)."""
    fall_tilt: float = 1.0
    """The robot fell when its base tilts more than this from upright [rad] ..."""
    fall_height: float = 0.12
    """... or its base sinks below this height [m]."""
    init_joint_noise: float = 0.1
    """Initial joint positions: standing pose + U(-x, x) [rad]."""
    joint_friction: bool = False
    """Simulate the joints' dry friction in training (costs ~40 % speed; reality samples always have it)."""
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        for t in self.reward:
            unknown = [a for a in t.arguments if a not in INPUTS]
            if unknown:
                raise ValueError(f"task {self.name!r}: term {t.name!r} reads {unknown}, which are not locomotion "
                                 f"inputs ({sorted(INPUTS)})")
        if len(self.gait_offsets) != len(self.feet):
            raise ValueError(f"task {self.name!r}: {len(self.gait_offsets)} gait_offsets for {len(self.feet)} feet")
        if self.frame_skip < 1 or self.max_episode_steps < 1:
            raise ValueError(f"task {self.name!r}: frame_skip and max_episode_steps must be >= 1")

    def describe(self) -> dict:
        return {"reward": [{"name": t.name, "weight": t.weight, "inputs": list(t.arguments)} for t in self.reward],
                "reward_floor": self.reward_floor, "inputs": dict(INPUTS)}


@dataclass(frozen=True)
class LocomotionRandomization:
    """Domain randomization of a legged task. Model terms are drawn into ``variants`` models once (per env seed);
    each episode runs on one variant picked at reset. Per-episode terms (calibration offsets, IMU bias, latency) are
    drawn at reset; noise every step; pushes every ``push_interval_s``.
    """

    variants: int = 32
    friction: tuple[float, float] = (0.4, 1.25)
    """Foot-floor sliding friction coefficient."""
    kp_scale: tuple[float, float] = (0.8, 1.2)
    kd_scale: tuple[float, float] = (0.7, 1.3)
    motor_strength: tuple[float, float] = (0.85, 1.0)
    """Scale of the torque limits."""
    payload: tuple[float, float] = (-1.0, 2.0)
    """Mass added to the base [kg]."""
    com_offset: float = 0.03
    """Base centre of mass shifted by U(-x, x) per axis [m]."""
    joint_friction: tuple[float, float] = (0.0, 0.0)
    """Scale of the MJCF's identified joint dry friction (``frictionloss``). Off in training (each joint's friction
    is a solver row: ~40 % of the step time); the held-out reality samples have it at full scale."""
    calibration: float = 0.02
    """Joint encoder zero offset U(-x, x) per joint [rad]: the robot measures q + offset and tracks targets in
    measured coordinates."""
    latency_probability: float = 0.5
    """Chance per episode that actions take effect one control period late."""
    gyro_noise: float = 0.1
    gyro_bias: float = 0.03
    gravity_noise: float = 0.03
    joint_pos_noise: float = 0.01
    joint_vel_noise: float = 0.5
    push_interval_s: float = 4.0
    push_velocity: float = 0.6
    """Every ``push_interval_s`` the base gets a horizontal velocity kick of up to this [m/s] (0: no pushes)."""

    @classmethod
    def named(cls, name: str) -> LocomotionRandomization:
        """``"train"`` (the defaults), ``"reality"`` (held-out samples: wider ranges, joint friction on, always
        pushes and latency) or ``"none"``-like zero noise ``"nominal"``.
        """
        if name == "train":
            return cls()
        if name == "reality":
            return cls(variants=20, friction=(0.35, 1.3), kp_scale=(0.75, 1.25), payload=(-1.0, 2.5),
                       joint_friction=(0.8, 1.2),
                       com_offset=0.04, calibration=0.03, latency_probability=0.5, push_interval_s=5.0,
                       push_velocity=0.6)
        if name == "nominal":
            return cls(variants=1, friction=(0.8, 0.8), kp_scale=(1, 1), kd_scale=(1, 1), motor_strength=(1, 1),
                       payload=(0, 0), com_offset=0.0, calibration=0.0, latency_probability=0.0, gyro_noise=0.0,
                       gyro_bias=0.0, gravity_noise=0.0, joint_pos_noise=0.0, joint_vel_noise=0.0, push_velocity=0.0)
        raise ValueError(f"unknown locomotion randomization {name!r}; known: train, reality, nominal")

    def __post_init__(self):
        if self.variants < 1:
            raise ValueError(f"randomization.variants must be >= 1, got {self.variants}")
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, tuple) and (len(v) != 2 or v[0] > v[1]):
                raise ValueError(f"randomization.{f.name}: expected [low, high] with low <= high, got {list(v)}")
            if isinstance(v, float) and v < 0:
                raise ValueError(f"randomization.{f.name} must be >= 0, got {v}")


def as_randomization(randomization) -> LocomotionRandomization | None:
    if randomization is None or isinstance(randomization, LocomotionRandomization):
        return randomization
    if isinstance(randomization, str):
        return LocomotionRandomization.named(randomization)
    if isinstance(randomization, Mapping):
        return LocomotionRandomization(**{k: tuple(v) if isinstance(v, list) else v
                                          for k, v in randomization.items()})
    raise TypeError(f"randomization must be None, a name, a mapping or LocomotionRandomization, got "
                    f"{type(randomization).__name__}")
