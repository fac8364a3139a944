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

from robot_rl.envs.base import MujocoTaskEnv
from robot_rl.envs.obs import ObservationBuilder

OBS_TERMS = (
    ("joint0_cos", "cos", "joint0"),
    ("joint1_cos", "cos", "joint1"),
    ("joint0_sin", "sin", "joint0"),
    ("joint1_sin", "sin", "joint1"),
    ("target_x", "goal", 0),
    ("target_y", "goal", 1),
    ("joint0_velocity", "vel", "joint0"),
    ("joint1_velocity", "vel", "joint1"),
    ("fingertip_minus_target_x", "site_minus_goal", "fingertip:x"),
    ("fingertip_minus_target_y", "site_minus_goal", "fingertip:y"),
)
OBS_UNITS = ("1", "1", "1", "1", "m", "m", "rad/s", "rad/s", "m", "m")


class ReacherEnv(MujocoTaskEnv):
    """Planar two-link reach (see module docstring).

    Args:
        success_distance: fingertip-target distance counted as success [m].
        **kw: ``MujocoTaskEnv`` arguments.

    """

    def __init__(self, *, success_distance: float = 0.02, max_episode_steps: int = 100, **kw):
        self.success_distance = float(success_distance)
        super().__init__("reacher2", frame_skip=2, max_episode_steps=max_episode_steps, **kw)

    def _setup(self):
        self._tip = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_SITE, "fingertip")
        self._mocap = self.model.body_mocapid[mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_BODY, "target")]

    def _make_observation_builder(self) -> ObservationBuilder:
        return ObservationBuilder(self.profile.joint_names, OBS_TERMS, goal_dim=2, model=self.model, units=OBS_UNITS)

    def _initial_state(self, rng):
        d = self.data
        d.qpos[self._qadr] = [rng.uniform(-math.pi, math.pi), rng.uniform(-2.5, 2.5)]
        d.qvel[self._dadr] = rng.uniform(-0.005, 0.005, size=2)
        angle, radius = rng.uniform(-math.pi, math.pi), rng.uniform(0.05, 0.20)
        goal = np.array([radius * math.cos(angle), radius * math.sin(angle)])
        d.mocap_pos[self._mocap, :2] = goal
        return goal

    def distance(self) -> float:
        """Fingertip-target distance [m] from the true joint state (forward kinematics)."""
        tip = self.observation_builder.site_position(self.data.qpos[self._qadr], "fingertip")
        return math.hypot(tip[0] - self._goal[0], tip[1] - self._goal[1])

    def _success_at_reset(self):
        return self.distance() < self.success_distance

    def _evaluate(self, action):
        dist = self.distance()
        return -dist, False, dist < self.success_distance
