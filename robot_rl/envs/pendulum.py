"""Torque-limited pendulum swing-up (sim/pendulum/pendulum.xml, hardware/pendulum.yaml), twin of Pendulum-v1.

Observation (float32): ``[cos(angle), sin(angle), angular_velocity rad/s]``, angle 0 = upright.
Action: torque, [-1, 1] -> [-2, 2] N m. Control period 0.05 s, 200 steps (10 s), start angle U(-pi, pi),
velocity U(-1, 1) rad/s. Reward as Gymnasium's Pendulum-v1: ``-(angle^2 + 0.1 omega^2 + 0.001 torque^2)`` with the
angle wrapped to [-pi, pi] and torque in N m, so returns compare directly (about -150 is solved; a swing-up policy
gets -120 to -200 depending on the start). No termination; ``is_success``: within 0.1 rad of upright.
"""

from __future__ import annotations

import math

import numpy as np

from robot_rl.envs.rewards import clip_unit, wrapped_angle
from robot_rl.envs.task import TaskSpec, Term, action, param, qpos, qvel

OBSERVATION = (
    ("pole_angle_cos", "cos", "hinge", "1"),
    ("pole_angle_sin", "sin", "hinge", "1"),
    ("pole_angular_velocity", "vel", "hinge", "rad/s"),
)
MAX_TORQUE_NM = 2.0  # the MJCF actuator's ctrlrange (tests/envs/test_task_rewards.py holds them equal)


def angle_cost(angle):
    """Squared angle from upright [rad^2], wrapped."""
    a = wrapped_angle(angle)
    return a * a


def velocity_cost(omega):
    """Squared angular velocity [(rad/s)^2]."""
    return omega * omega


def torque_cost(u, max_torque):
    """Squared applied torque [(N m)^2] (the action clipped as MuJoCo clamps the ctrl)."""
    torque = max_torque * clip_unit(u)
    return torque * torque


def upright(angle):
    """Within 0.1 rad of upright."""
    return np.abs(wrapped_angle(angle)) < 0.1


def _initial_state(env, rng):
    env.data.qpos[env.joint_qpos_addresses[0]] = rng.uniform(-math.pi, math.pi)
    env.data.qvel[env.joint_qvel_addresses[0]] = rng.uniform(-1.0, 1.0)
    return None


def task() -> TaskSpec:
    """Pendulum-v1's swing-up (see module docstring)."""
    return TaskSpec(
        name="PendulumSwingup", robot="pendulum", frame_skip=5, max_episode_steps=200, observation=OBSERVATION,
        inputs={"angle": qpos("hinge"), "omega": qvel("hinge"), "u": action(0), "max_torque": param(MAX_TORQUE_NM)},
        reward=(Term("angle", angle_cost, -1.0), Term("velocity", velocity_cost, -0.1),
                Term("torque", torque_cost, -0.001)),
        success=Term("upright", upright), initial_state=_initial_state)

