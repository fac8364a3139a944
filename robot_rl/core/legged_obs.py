"""The observation of a legged robot's velocity-tracking policy, from what the robot measures (numpy only).

One function builds it in training (:mod:`robot_rl.envs.locomotion`, ``(N, n)`` rows), in the ROS policy node
(``/imu`` + ``/joint_states`` + ``/cmd_vel``) and in log replay, so the three cannot drift. Layout (float32):

====================  ====  =============================================================================
``ang_vel``           3     IMU angular velocity, IMU (= base) frame [rad/s]
``gravity``           3     unit gravity direction in the IMU frame, from the IMU orientation (upright: 0 0 -1)
``joint_pos``         n_j   joint positions minus the standing pose, command order [rad]
``joint_vel``         n_j   joint velocities [rad/s]
``last_action``       n_j   the policy's previous (normalized, clipped) action
``command``           3     commanded forward, sideways [m/s] and yaw rate [rad/s], base frame
``clock``             2     sin, cos of the gait clock (2 pi x phase); zero while the command is zero
====================  ====  =============================================================================

No base linear velocity: a real robot does not measure it (the reward uses it, the policy does not see it).
"""

from __future__ import annotations

import numpy as np

COMMAND_DEADBAND = 0.05
"""A command whose norm is below this counts as "stand still" (the clock is hidden, the gait stops)."""


def observation_names(joints) -> list[str]:
    """Names of the observation entries, in order, for joints ``joints`` (command order)."""
    out = [f"ang_vel_{a}" for a in "xyz"] + [f"gravity_{a}" for a in "xyz"]
    out += [f"{j}_pos" for j in joints] + [f"{j}_vel" for j in joints] + [f"{j}_last_action" for j in joints]
    return out + ["command_vx", "command_vy", "command_yaw_rate", "clock_sin", "clock_cos"]


def observation_units(joints) -> list[str]:
    """Units of the observation entries (see :func:`observation_names`)."""
    n = len(joints)
    return ["rad/s"] * 3 + ["1"] * 3 + ["rad"] * n + ["rad/s"] * n + ["1"] * n + ["m/s", "m/s", "rad/s", "1", "1"]


def observation_size(n_joints: int) -> int:
    return 11 + 3 * n_joints


def gravity_in_frame(quat_wxyz: np.ndarray) -> np.ndarray:
    """Unit gravity direction ``R^T (0, 0, -1)`` in the frame of orientation ``quat_wxyz`` ``(..., 4)`` (w, x, y, z;
    frame -> world), shape ``(..., 3)``. Quaternions are normalized first (IMU drivers round them).
    """
    q = np.asarray(quat_wxyz, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    return np.stack([-2.0 * (x * z - w * y), -2.0 * (y * z + w * x), -(1.0 - 2.0 * (x * x + y * y))], axis=-1)


def moving(command: np.ndarray) -> np.ndarray:
    """True where ``command`` ``(..., 3)`` asks the robot to move (norm above :data:`COMMAND_DEADBAND`)."""
    return np.linalg.norm(np.asarray(command), axis=-1) > COMMAND_DEADBAND


def locomotion_observation(ang_vel, gravity, joint_pos_rel, joint_vel, last_action, command, phase) -> np.ndarray:
    """The observation (module docstring), float32, from ``(N, .)`` arrays (or 1-D for one robot); ``phase`` is the
    gait clock in [0, 1) ``(N,)``.
    """
    command = np.asarray(command)
    angle = 2.0 * np.pi * np.asarray(phase, dtype=np.float64)
    on = moving(command)
    clock = np.stack([np.sin(angle) * on, np.cos(angle) * on], axis=-1)
    return np.concatenate([ang_vel, gravity, joint_pos_rel, joint_vel, last_action, command, clock], axis=-1,
                          dtype=np.float32)
