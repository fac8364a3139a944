"""Two-link planar reacher (sim/reacher/reacher.xml, hardware/reacher2.yaml), ``robot_rl/Reacher2-v0``.

Observation (float32, 10): ``[cos q0, cos q1, sin q0, sin q1, target_x m, target_y m, qd0 rad/s, qd1 rad/s,
fingertip_x - target_x m, fingertip_y - target_y m]`` (Gymnasium Reacher layout; the fingertip comes from forward
kinematics of the measured joint angles inside the observation builder, the target is the builder's goal input).
Action: joint torques, [-1, 1] -> [-0.1, 0.1] N m. Control period 0.02 s, 100 steps (2 s).
Target: uniform angle, radius U(0.05, 0.20) m (reach 0.21 m). Reward ``-distance`` [m] between fingertip and target;
``is_success`` when the distance is below ``success_distance`` (0.02 m). No termination.
"""

from __future__ import annotations

import math

import mujoco
import numpy as np

from robot_rl.envs.task import TaskSpec, Term, goal, param, site

OBSERVATION = (
    ("joint0_cos", "cos", "joint0", "1"),
    ("joint1_cos", "cos", "joint1", "1"),
    ("joint0_sin", "sin", "joint0", "1"),
    ("joint1_sin", "sin", "joint1", "1"),
    ("target_x", "goal", 0, "m"),
    ("target_y", "goal", 1, "m"),
    ("joint0_velocity", "vel", "joint0", "rad/s"),
    ("joint1_velocity", "vel", "joint1", "rad/s"),
    ("fingertip_minus_target_x", "site_minus_goal", "fingertip:x", "m"),
    ("fingertip_minus_target_y", "site_minus_goal", "fingertip:y", "m"),
)


def distance(tip, target):
    """Planar fingertip-target distance [m] of ``(..., 3)`` tip positions and ``(..., 2)`` targets."""
    dx, dy = tip[..., 0] - target[..., 0], tip[..., 1] - target[..., 1]
    return np.sqrt(dx * dx + dy * dy)


def reached(tip, target, success_distance):
    """The fingertip is within ``success_distance`` [m] of the target."""
    return distance(tip, target) < success_distance


def _initial_state(env, rng):
    d = env.data
    d.qpos[env.joint_qpos_addresses] = [rng.uniform(-math.pi, math.pi), rng.uniform(-2.5, 2.5)]
    d.qvel[env.joint_qvel_addresses] = rng.uniform(-0.005, 0.005, size=2)
    angle, radius = rng.uniform(-math.pi, math.pi), rng.uniform(0.05, 0.20)
    target = np.array([radius * math.cos(angle), radius * math.sin(angle)])
    d.mocap_pos[env.model.body_mocapid[mujoco.mj_name2id(env.model, mujoco.mjtObj.mjOBJ_BODY, "target")], :2] = target
    return target


def task(success_distance: float = 0.02) -> TaskSpec:
    """Reach a random planar target; success within ``success_distance`` [m]."""
    return TaskSpec(
        name="Reacher2", robot="reacher2", frame_skip=2, max_episode_steps=100, observation=OBSERVATION, goal_dim=2,
        inputs={"tip": site("fingertip"), "target": goal(), "success_distance": param(success_distance)},
        reward=(Term("distance", distance, -1.0),), success=Term("reached", reached), initial_state=_initial_state,
        options={"success_distance": float(success_distance)})
