"""One env of a legged velocity-tracking task with the ``gym.Env`` API: ``LocomotionEnv``.

A thin wrapper over a one-env :class:`robot_rl.envs.locomotion.LocomotionVecEnv`, for evaluation, video and the
ROS sim; the task registry (``robot_rl.envs.TASKS``) names it, and its ``vector_class`` has ``make_vec`` build the
batched env instead of copies. Kept apart so ``locomotion.py`` holds only the batched env.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np

from robot_rl.envs.legged_task import LocomotionSpec
from robot_rl.envs.locomotion import LocomotionVecEnv


class LocomotionEnv(gym.Env):
    """One env of a :class:`LocomotionSpec` task with the ``gym.Env`` API (a :class:`LocomotionVecEnv` of one; for
    evaluation, video and the ROS sim). ``vector_class`` tells ``make_vec`` to build the batched env instead of
    copies of this one.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 50}
    vector_class = LocomotionVecEnv

    def __init__(self, spec: LocomotionSpec, *, randomization=None, seed: int | None = None,
                 render_mode: str | None = None, max_episode_steps: int | None = None, num_threads: int = 1):
        self.vec = LocomotionVecEnv(spec, 1, seed=seed, randomization=randomization, num_threads=num_threads,
                                    render_mode=render_mode, max_episode_steps=max_episode_steps)
        self.task, self.name, self.profile = spec, spec.name, self.vec.profile
        self.render_mode = render_mode
        self.max_episode_steps = self.vec.max_episode_steps
        self.observation_space = self.vec.single_observation_space
        self.action_space = self.vec.single_action_space
        self.obs_names, self.obs_units = self.vec.obs_names, self.vec.obs_units
        self.model = self.vec.model
        self.control_dt = self.vec.dt
        """Control period [s] (``frame_skip`` x physics timestep), as the other envs name it."""

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        obs, _ = self.vec.reset(seed=seed, options=options)
        return obs[0], {}

    def step(self, action):
        obs, rew, term, trunc, info = self.vec.step(np.asarray(action, dtype=np.float64)[None])
        out = {"physics_error": bool(info.get("physics_error", np.zeros(1, bool))[0])}
        if term[0] or trunc[0]:
            out["final_obs"] = info["final_obs"][0]
            obs = info["final_obs"]  # gym.Env: the caller resets
        return obs[0], float(rew[0]), bool(term[0]), bool(trunc[0]), out

    def set_command(self, command, hold_s: float = math.inf) -> None:
        """Hold ``command`` (vx, vy [m/s], yaw rate [rad/s]) for ``hold_s`` seconds."""
        self.vec.set_command(command, hold_s)

    def episode_sample(self) -> dict[str, Any]:
        """The current episode's randomization sample (see ``LocomotionVecEnv.episode_sample``)."""
        return self.vec.episode_sample(0)

    def action_map(self) -> tuple[np.ndarray, np.ndarray]:
        """``(center, half_range)``: a normalized action ``a`` commands joint targets ``center + half_range * a``
        [rad] (the standing pose plus ``action_scale`` x a); the exported policy outputs these targets.
        """
        return self.vec.action_map()

    def render(self):
        return self.vec.render()

    def visual_scene(self):
        """``(model, data)`` with the visual meshes in the current state (see ``LocomotionVecEnv.visual_scene``)."""
        return self.vec.visual_scene()

    def close(self):
        self.vec.close()

