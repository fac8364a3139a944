"""Environment construction for the learners and the rollout workers.

``robot_rl/...`` ids come from ``robot_rl.envs.make`` / ``robot_rl.envs.vector.make_vec``; any other id is created
with ``gymnasium.make`` (actions rescaled to [-1, 1]) so the learners also run on stock Gymnasium tasks.
Goal-conditioned dict observations are flattened to ``concat(observation, desired_goal)`` (the contract the
exported policy uses).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np


def is_goal_space(space: gym.Space) -> bool:
    return isinstance(space, gym.spaces.Dict) and "observation" in space.spaces and "desired_goal" in space.spaces


def flatten_goal_obs(obs) -> np.ndarray:
    """``concat(observation, desired_goal)`` along the last axis for dict observations; arrays pass through."""
    if isinstance(obs, dict):
        return np.concatenate([obs["observation"], obs["desired_goal"]], axis=-1).astype(np.float32, copy=False)
    return np.asarray(obs, dtype=np.float32)


class FlattenGoalObservation(gym.ObservationWrapper):
    """Dict (goal-conditioned) observation -> flat float32 ``concat(observation, desired_goal)``; the last
    observation's ``achieved_goal`` stays readable as ``achieved_goal`` (hindsight relabeling stores it).
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        spaces = env.observation_space.spaces
        low = np.concatenate([spaces["observation"].low, spaces["desired_goal"].low]).astype(np.float32)
        high = np.concatenate([spaces["observation"].high, spaces["desired_goal"].high]).astype(np.float32)
        self.observation_space = gym.spaces.Box(low, high, dtype=np.float32)

        self.achieved_goal = np.zeros(spaces["achieved_goal"].shape, dtype=np.float32)

    def observation(self, observation):
        self.achieved_goal = np.asarray(observation["achieved_goal"], dtype=np.float32)
        return flatten_goal_obs(observation)


def obs_names_of(env: gym.Env, n_obs: int) -> list[str]:
    """Observation names in flat-input order (the env's ``obs_names``, plus ``desired_goal[i]`` for goal tasks)."""
    names = list(getattr(env.unwrapped, "obs_names", None) or [])
    goal_names = list(getattr(env.unwrapped, "goal_names", None) or [])
    if names and len(names) < n_obs:
        names += goal_names if len(names) + len(goal_names) == n_obs else [
            f"desired_goal[{i}]" for i in range(n_obs - len(names))]
    if len(names) != n_obs:
        names = [f"obs[{i}]" for i in range(n_obs)]
    return names


def check_box_spaces(env: gym.Env, env_id: str) -> None:
    """Raise a ValueError naming ``env_id`` unless its actions are a bounded Box and its observations a Box (or a
    goal dict): the learners output continuous actions in [-1, 1] and read flat observation vectors.
    """
    act, obs = env.action_space, env.observation_space
    if not isinstance(act, gym.spaces.Box):
        raise ValueError(f"env {env_id!r} has a {type(act).__name__} action space; robot_rl's learners need a "
                         f"continuous Box action space")
    if not (np.isfinite(act.low).all() and np.isfinite(act.high).all()):
        raise ValueError(f"env {env_id!r}: its Box action space is unbounded (low {act.low}, high {act.high}); "
                         f"actions are rescaled from [-1, 1] to the bounds, so they must be finite")
    if not (isinstance(obs, gym.spaces.Box) or is_goal_space(obs)):
        raise ValueError(f"env {env_id!r} has a {type(obs).__name__} observation space; robot_rl's learners need "
                         f"a Box (or a goal dict with observation / desired_goal)")


def make_env(env_id: str, *, randomization: str | None = None, seed: int | None = None) -> gym.Env:
    """One environment with [-1, 1] actions and flat float32 observations."""
    if env_id.startswith("robot_rl/"):
        from robot_rl.envs import make

        env = make(env_id, randomization=randomization, seed=seed)
    else:
        if randomization is not None:
            raise ValueError(f"env {env_id!r} is a plain gymnasium env: domain randomization {randomization!r} "
                             f"is only available for robot_rl/ envs (set env.randomization: null)")
        env = gym.make(env_id)
        check_box_spaces(env, env_id)
        act = env.action_space
        env = gym.wrappers.RescaleAction(env, np.full(act.shape, -1.0, act.dtype), np.full(act.shape, 1.0, act.dtype))
    if is_goal_space(env.observation_space):
        env = FlattenGoalObservation(env)
    return env


def make_vec_env(env_id: str, num_envs: int, *, randomization: str | None = None, seed: int = 0):
    """A vector env with same-step autoreset (``infos["final_obs"]``, ``infos["_final_obs"]``)."""
    if env_id.startswith("robot_rl/"):
        from robot_rl.envs.vector import make_vec

        return make_vec(env_id, num_envs, seed=seed, randomization=randomization)

    def factory() -> gym.Env:
        return make_env(env_id)

    return gym.vector.SyncVectorEnv([factory] * num_envs, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)


def final_obs_rows(final_obs, idx: np.ndarray) -> np.ndarray:
    """Flat float32 final observations ``[len(idx), n_obs]`` of envs ``idx`` from ``infos["final_obs"]``.

    Accepts the robot_rl vector env's stacked arrays / dict of arrays and Gymnasium's object arrays.
    """
    if isinstance(final_obs, np.ndarray) and final_obs.dtype == object:
        return np.stack([flatten_goal_obs(final_obs[i]) for i in idx])
    return flatten_goal_obs(final_obs)[idx]


def episode_success(info: dict) -> float:
    """1.0 / 0.0 from ``info["is_success"]``; NaN for tasks without a success notion."""
    if "is_success" in info:
        return float(bool(np.asarray(info["is_success"]).reshape(-1)[0]))
    return float("nan")
