"""Goal-conditioned reach with a 7-DoF torque-controlled arm (Panda kinematics), ``robot_rl/ArmReach-v0``.

Gymnasium-Robotics dict convention: ``observation`` = ``[q (7) rad, qdot (7) rad/s]`` (profile joint order),
``achieved_goal`` = end-effector (flange site ``ee``) position [m] by forward kinematics of the measured joints,
``desired_goal`` = target position [m]. ``compute_reward(achieved_goal, desired_goal, info)`` is vectorized over
leading dimensions: sparse ``-(d > distance_threshold)`` (default, threshold 0.05 m) or dense ``-d``.
``info["is_success"]``: ``d <= distance_threshold``. For a flat policy input use ``concat(observation,
desired_goal)`` (docs/contracts.md).

Action: joint torques, [-1, 1] -> +-87 N m (joints 1-4), +-12 N m (joints 5-7), **added on top of gravity
compensation** computed from the nominal (un-randomized) model at the start of every control step and held for it,
like Franka's torque interface (libfranka adds gravity compensation from the robot's own model; mass randomization
therefore leaves a realistic compensation error). Control period 0.02 s (0.002 s x 10), 100 steps (2 s).
Start: Panda home pose + U(-0.1, 0.1) rad. Target: forward kinematics of a uniformly random joint configuration in
the inner 80 % of the joint ranges, resampled until it is at least 0.25 m from the base axis and 0.15 m above the
floor (so every target is reachable).
"""

from __future__ import annotations

import copy
import math

import gymnasium as gym
import mujoco
import numpy as np

from robot_rl.envs.base import MujocoTaskEnv
from robot_rl.envs.task import TaskSpec, Term, goal, param, site

HOME = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785])
JOINTS = tuple(f"joint{i}" for i in range(1, 8))


def distance(ee, target):
    """End-effector-target distance [m] of ``(..., 3)`` positions."""
    return np.linalg.norm(ee - target, axis=-1)


def sparse_reach(ee, target, distance_threshold):
    """-1 while farther than ``distance_threshold`` [m] from the target, else 0 (Gymnasium-Robotics sparse)."""
    return -(distance(ee, target) > distance_threshold).astype(np.float64)


def reached(ee, target, distance_threshold):
    """Within ``distance_threshold`` [m] of the target."""
    return distance(ee, target) <= distance_threshold


def _initial_state(env, rng):
    d, m = env.data, env.model
    d.qpos[env.joint_qpos_addresses] = HOME + rng.uniform(-0.1, 0.1, size=7)
    d.qvel[:] = 0.0
    lo, hi = m.jnt_range[:7, 0], m.jnt_range[:7, 1]
    for _ in range(100):
        target = env.observation_builder.site_position(rng.uniform(lo + 0.1 * (hi - lo), hi - 0.1 * (hi - lo)), "ee")
        if np.hypot(target[0], target[1]) >= 0.25 and target[2] >= 0.15:
            break
    d.mocap_pos[m.body_mocapid[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, "target")]] = target
    return target


def task(reward_type: str = "sparse", distance_threshold: float = 0.05) -> TaskSpec:
    """Reach a random end-effector target; ``reward_type`` ``"sparse"`` (-(d > threshold)) or ``"dense"`` (-d)."""
    if reward_type not in ("sparse", "dense"):
        raise ValueError(f"reward_type must be 'sparse' or 'dense', got {reward_type!r}")
    reward = Term("reach", sparse_reach) if reward_type == "sparse" else Term("distance", distance, -1.0)
    observation = tuple((f"{n}_position", "pos", n, "rad") for n in JOINTS) + tuple(
        (f"{n}_velocity", "vel", n, "rad/s") for n in JOINTS)
    return TaskSpec(
        name="ArmReach", robot="arm7", frame_skip=10, max_episode_steps=100, observation=observation, goal_dim=3,
        inputs={"ee": site("ee"), "target": goal(), "distance_threshold": param(distance_threshold)},
        reward=(reward,), success=Term("reached", reached), achieved_goal="ee", initial_state=_initial_state,
        options={"reward_type": reward_type, "distance_threshold": float(distance_threshold)})


class ArmReachEnv(MujocoTaskEnv):
    """The arm's env: the task's declaration plus gravity compensation before every physics step and the
    Gymnasium-Robotics dict observation (see module docstring). The achieved goal is the task's ``achieved_goal``
    site input (the end effector), so other arms reuse it (``robot_rl.envs.panda.PandaReachEnv``).
    """

    def _setup(self):
        self._ee_site = self.task.inputs[self.task.achieved_goal].arg
        self._n_joints = len(self._qadr)
        # The robot's own model for gravity compensation: the nominal model, never randomized.
        self._comp_model = copy.copy(self.model)
        self._comp_data = mujoco.MjData(self._comp_model)
        self._comp_force = np.zeros(self.model.nv)
        # Cached views (each MjData attribute access builds a new numpy view).
        self._comp_qpos = self._comp_data.qpos
        self._qfrc_applied = self.data.qfrc_applied
        self._achieved, self._achieved_for = np.zeros(3), None

    def _make_observation_space(self):
        n = self.observation_builder.n_obs
        box3 = gym.spaces.Box(-np.inf, np.inf, shape=(3,), dtype=np.float32)
        return gym.spaces.Dict({"observation": gym.spaces.Box(-np.inf, np.inf, shape=(n,), dtype=np.float32),
                                "achieved_goal": box3, "desired_goal": box3})

    def gravity_compensation(self, q: np.ndarray) -> np.ndarray:
        """Gravity torques [N m] of the nominal model at joint positions ``q`` (n joints,)."""
        m, d = self._comp_model, self._comp_data
        self._comp_qpos[:] = q  # (its qvel stays zero: nothing else uses this MjData)
        mujoco.mj_kinematics(m, d)
        mujoco.mj_comPos(m, d)
        mujoco.mj_rne(m, d, 0, self._comp_force)
        return self._comp_force

    def _before_physics(self):
        self._qfrc_applied[:] = self.gravity_compensation(self._qpos)

    def _observe(self):
        # Achieved goal from the same measured (possibly noisy) float64 joint angles as the observation; cached
        # for _package_obs of exactly this observation array.
        q, qd = self._qpos[self._qadr], self._qvel[self._dadr]
        if self.randomization_enabled and self.randomizer.acts_on_sensors:
            q, qd = self.randomizer.sense(q, qd, self._np_random)
        obs = self.observation_builder.build(q, qd)
        self._achieved, self._achieved_for = self.observation_builder.site_position(q, self._ee_site), obs
        return obs

    def _package_obs(self, obs):
        """Dict observation from the flat one (the achieved goal by FK of its joint angles)."""
        if obs is self._achieved_for:
            achieved = self._achieved.astype(np.float32)
        else:  # an observation built elsewhere (log import): FK of its joint angles
            q = obs[:self._n_joints].astype(np.float64)
            achieved = self.observation_builder.site_position(q, self._ee_site).astype(np.float32)
        if not math.isfinite(achieved.dot(achieved)):  # diverged state: the step reports physics_error
            achieved = np.nan_to_num(achieved, nan=0.0, posinf=0.0, neginf=0.0)
        return {"observation": obs, "achieved_goal": achieved, "desired_goal": self._goal.astype(np.float32)}

    def end_effector(self) -> np.ndarray:
        """True end-effector position [m] (3,)."""
        return self.observation_builder.site_position(self._qpos[self._qadr], self._ee_site)
