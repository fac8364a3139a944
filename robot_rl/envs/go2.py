"""Unitree Go2 (and Go1) joystick task: track a commanded forward / sideways velocity and yaw rate
(hardware/go2.yaml, hardware/go1.yaml: the same joint names, feet and IMU site in Unitree's two models).

Position control as on the robot: actions are joint offsets from the standing pose (x ``action_scale`` rad), tracked
by the firmware's PD at the physics rate. Observation: :mod:`robot_rl.core.legged_obs` (IMU angular velocity,
gravity direction, joints, last action, command, gait clock; no base linear velocity). 20 ms control period
(4 x 5 ms physics steps), 1000 steps (20 s) per episode, commands redrawn every ~5 s.

Reward: the weighted sum of the terms below (floored at 0), in the spirit of legged_gym / MuJoCo Playground's
joystick tasks: velocity tracking, a trotting schedule driven by the gait clock, posture, and penalties on
orientation, base height, vertical and roll/pitch motion, joint limits, torques, action rate, hard landings and falls.
See docs/robots.md for the table and the reasoning behind each weight.
"""

from __future__ import annotations

import numpy as np

from robot_rl.envs.legged_task import LocomotionSpec
from robot_rl.envs.task import Term

FEET = ("FL_foot", "FR_foot", "RL_foot", "RR_foot")
FOOT_RADIUS = {"go2": 0.022, "go1": 0.023}  # the foot spheres of Unitree's MJCF
TRACKING_SIGMA = 0.1  # 0.25 (legged_gym's) kept 93 % of the reward at 0.13 m/s: the robot walked 12 % slow
SWING_HEIGHT = 0.08
POSE_WEIGHTS = np.array([1.0, 1.0, 0.1] * 4)  # hip, thigh, calf per leg: keep the hips in, let the knees work


def track_lin_vel(lin_vel, command):
    """exp(-|v_xy - command_xy|^2 / 0.1): 1 on the commanded planar velocity."""
    return np.exp(-np.sum((lin_vel[:, :2] - command[:, :2]) ** 2, axis=1) / TRACKING_SIGMA)


def track_yaw_rate(ang_vel, command):
    """exp(-(yaw rate - commanded)^2 / 0.1)."""
    return np.exp(-((ang_vel[:, 2] - command[:, 2]) ** 2) / TRACKING_SIGMA)


def gait(swing, foot_height, foot_force, foot_slip, moving):
    """Per foot, mean over feet: while the clock says swing, lift the foot to ~8 cm without load; while it says
    stance, keep it loaded and not slipping. Standing still (no command): all feet down, no slip.
    """
    lift = np.exp(-foot_force / 10.0) * np.exp(-((foot_height - SWING_HEIGHT * np.maximum(swing, 0.0)) ** 2)
                                               / 0.035 ** 2)
    stance = (foot_force > 0.0) * np.exp(-foot_slip / 0.05)
    blend = np.clip(0.5 + swing, 0.0, 1.0) * moving[:, None]
    return np.mean(blend * lift + (1.0 - blend) * stance, axis=1)


def feet_air_time(air_time, touchdown, moving):
    """Sum over feet landing this step of (air time - 0.25 s), while moving: rewards full strides."""
    return np.sum((air_time - 0.25) * touchdown, axis=1) * moving


def pose(joint_pos):
    """exp(-sum w (q - standing)^2): stay near the standing pose."""
    return np.exp(-np.sum(POSE_WEIGHTS * joint_pos ** 2, axis=1))


def orientation(gravity):
    """Squared tilt: gravity_x^2 + gravity_y^2 in the base frame."""
    return gravity[:, 0] ** 2 + gravity[:, 1] ** 2


def base_height(height_error):
    """Squared base height error from the standing height [m^2]: walk and stand tall, not crouched."""
    return height_error ** 2


def vertical_velocity(base_vz):
    """Squared vertical base velocity [m^2/s^2]."""
    return base_vz ** 2


def roll_pitch_rate(ang_vel):
    """Squared roll and pitch rates [rad^2/s^2]."""
    return ang_vel[:, 0] ** 2 + ang_vel[:, 1] ** 2


def joint_limits(joint_pos, joint_lower, joint_upper):
    """Distance beyond 95 % of each joint's range, summed [rad]."""
    mid, half = (joint_lower + joint_upper) / 2, 0.95 * (joint_upper - joint_lower) / 2
    return np.sum(np.maximum(np.abs(joint_pos - mid) - half, 0.0), axis=1)


def torques(torque):
    """Sum of squared joint torques [N^2 m^2]."""
    return np.sum(torque ** 2, axis=1)


def action_rate(action, last_action):
    """Sum of squared action changes."""
    return np.sum((action - last_action) ** 2, axis=1)


def hard_landing(landing_speed):
    """Squared speed of feet landing this step, summed [m^2/s^2]."""
    return np.sum(landing_speed, axis=1)


def termination(fell):
    """1 on the step the robot falls."""
    return fell


REWARD = (
    Term("track_lin_vel", track_lin_vel, 2.0),
    Term("track_yaw_rate", track_yaw_rate, 1.5),
    Term("gait", gait, 2.0),
    Term("feet_air_time", feet_air_time, 0.5),
    Term("pose", pose, 0.5),
    Term("orientation", orientation, -5.0),
    Term("base_height", base_height, -40.0),
    Term("vertical_velocity", vertical_velocity, -0.5),
    Term("roll_pitch_rate", roll_pitch_rate, -0.05),
    Term("joint_limits", joint_limits, -1.0),
    Term("torques", torques, -2e-5),
    Term("action_rate", action_rate, -0.01),
    Term("hard_landing", hard_landing, -1.0),
    Term("termination", termination, -10.0),
)


def task(joint_friction: bool = False, action_scale: float = 0.5, robot: str = "go2") -> LocomotionSpec:
    """The joystick task (see module docstring) for ``robot`` (go2 or go1). ``joint_friction``: simulate the joints'
    dry friction in training too (slower); ``action_scale``: joint offset of a unit action [rad].
    """
    if robot not in FOOT_RADIUS:
        raise ValueError(f"joystick task: robot must be one of {sorted(FOOT_RADIUS)}, got {robot!r}")
    return LocomotionSpec(
        name=f"{robot.capitalize()}Joystick", robot=robot, frame_skip=4, max_episode_steps=1000, feet=FEET,
        foot_radius=FOOT_RADIUS[robot],
        reward=REWARD, action_scale=float(action_scale), command_max=(1.0, 0.5, 1.0), command_min_vx=-0.5,
        joint_friction=bool(joint_friction),
        options={"joint_friction": bool(joint_friction), "action_scale": float(action_scale)})
