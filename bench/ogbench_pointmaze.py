"""OGBench's PointMaze (medium maze, "navigate" data) for robot_rl's offline goal-conditioned learners.

OGBench (Park et al. 2024, `ogbench` 1.2.2) downloads its datasets at run time, which this machine cannot; the wheel
ships the environments, so ``generate`` makes a ``pointmaze-medium-navigate-v0``-style dataset locally with the
procedure of OGBench's ``data_gen_scripts/generate_locomaze.py`` (dataset type ``navigate``, noise 0.5, 1000 episodes
of 1001 steps): start in a random free cell, head for a random goal cell along the maze's BFS subgoals with
Gaussian action noise, and draw a new goal cell each time the current one is reached. Written in robot_rl's episode
dataset format (Dict observations: ``observation`` = ``achieved_goal`` = the point's xy, ``desired_goal`` = the
commanded goal's xy), so ``robot-rl train`` with a gcbc / gciql config reads it like any collected dataset.

``PointMazeGoalEnv`` (registered here as ``PointMazeMediumGoal-v0``, so a config names it
``ogbench_pointmaze:PointMazeMediumGoal-v0`` with bench/ on PYTHONPATH) is the same maze as a goal-conditioned
Gymnasium env: reset(seed) poses OGBench evaluation task ``1 + seed % 5``, success (``info["is_success"]``) is
OGBench's own (the point within 1 m of the goal; the episode ends there). ``evaluate`` runs OGBench's protocol: its
five evaluation tasks, each from OGBench's own reset, success = reached the goal within 1000 steps.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
import ogbench.locomaze  # noqa: F401 - registers pointmaze-medium-v0

MAZE_ENV = "pointmaze-medium-v0"
DATASET_ID = "ogbench/pointmaze-medium-navigate-v0"
N_TASKS = 5


def _cells(maze_map: np.ndarray) -> tuple[list, list]:
    """Free cells, and the free cells that are not straight-hallway cells (OGBench's goal cells)."""
    free, vertex = [], []
    for i in range(maze_map.shape[0]):
        for j in range(maze_map.shape[1]):
            if maze_map[i, j] != 0:
                continue
            free.append((i, j))
            vertical = maze_map[i - 1, j] == 0 and maze_map[i + 1, j] == 0 and maze_map[i, j - 1] == 1 \
                and maze_map[i, j + 1] == 1
            horizontal = maze_map[i, j - 1] == 0 and maze_map[i, j + 1] == 0 and maze_map[i - 1, j] == 1 \
                and maze_map[i + 1, j] == 1
            if not (vertical or horizontal):
                vertex.append((i, j))
    return free, vertex


def generate(out: str | Path, *, episodes: int = 1000, steps: int = 1001, noise: float = 0.5, seed: int = 0,
             progress: bool = True):
    """Write the navigate dataset to ``out`` (robot_rl episode format); returns the loaded ``EpisodeDataset``."""
    from tqdm import trange

    from robot_rl.data.dataset import DatasetWriter, Episode, load_dataset

    np.random.seed(seed)  # OGBench's env draws its position noise from numpy's global generator
    rng = np.random.default_rng(seed)
    env = gym.make(MAZE_ENV, terminate_at_goal=False, max_episode_steps=steps)
    u = env.unwrapped
    free, vertex = _cells(u.maze_map)
    dt = float(u.model.opt.timestep * u.frame_skip)
    box = gym.spaces.Box(-np.inf, np.inf, (2,), np.float64)
    space = gym.spaces.Dict({"observation": box, "achieved_goal": box, "desired_goal": box})
    meta = {"env_id": "ogbench_pointmaze:PointMazeMediumGoal-v0", "control_period_s": dt,
            "provenance": {"generator": "bench/ogbench_pointmaze.py (OGBench generate_locomaze.py, navigate)",
                           "noise": noise, "seed": seed, "ogbench_env": MAZE_ENV}}
    with DatasetWriter(out, dataset_id=DATASET_ID, observation_space=space, action_space=u.action_space,
                       robot_rl_metadata=meta) as writer:
        for ep in trange(episodes, disable=not progress, desc="pointmaze navigate data", unit="ep"):
            init_ij = free[rng.integers(len(free))]
            goal_ij = vertex[rng.integers(len(vertex))]
            ob, _ = env.reset(seed=seed if ep == 0 else None,
                              options={"task_info": {"init_ij": init_ij, "goal_ij": goal_ij}})
            obs, goals, acts = [ob], [np.array(u.cur_goal_xy)], []
            for _ in range(steps):
                xy = u.get_xy()
                subgoal, _ = u.get_oracle_subgoal(xy, u.cur_goal_xy)
                direction = (subgoal - xy) / (np.linalg.norm(subgoal - xy) + 1e-6)
                action = np.clip(direction + rng.normal(0.0, noise, 2), -1.0, 1.0)
                ob, _, _, _, info = env.step(action)
                if info["success"]:
                    u.set_goal(vertex[rng.integers(len(vertex))])
                acts.append(action)
                obs.append(ob)
                goals.append(np.array(u.cur_goal_xy))
            o, g = np.asarray(obs), np.asarray(goals)
            n = len(acts)
            writer.add(Episode(observations={"observation": o, "achieved_goal": o.copy(), "desired_goal": g},
                               actions=np.asarray(acts, np.float32), rewards=np.zeros(n),
                               terminations=np.zeros(n, bool), truncations=np.eye(1, n, n - 1, bool)[0],
                               time_s=np.arange(n + 1) * dt, metadata={"seed": seed * 100_000 + ep}))
    env.close()
    return load_dataset(out)


class PointMazeGoalEnv(gym.Env):
    """OGBench's medium PointMaze as a goal env: reset(seed) poses evaluation task ``1 + seed % 5``."""

    metadata = {"render_modes": []}

    def __init__(self, max_episode_steps: int = 1000):
        self._env = gym.make(MAZE_ENV, max_episode_steps=max_episode_steps)  # terminates at the goal
        box = gym.spaces.Box(-np.inf, np.inf, (2,), np.float64)
        self.observation_space = gym.spaces.Dict({"observation": box, "achieved_goal": box, "desired_goal": box})
        self.action_space = self._env.action_space
        self.control_dt = float(self._env.unwrapped.model.opt.timestep * self._env.unwrapped.frame_skip)
        self._goal = np.zeros(2)

    def _obs(self, ob: np.ndarray) -> dict:
        return {"observation": ob.copy(), "achieved_goal": ob.copy(), "desired_goal": self._goal.copy()}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        task = 1 + (0 if seed is None else seed) % N_TASKS
        if seed is not None:
            np.random.seed(seed % 2**32)  # the env's position noise
        ob, info = self._env.reset(seed=seed, options={"task_id": task, **(options or {})})
        self._goal = np.asarray(info["goal"], np.float64)
        return self._obs(ob), {"task_id": task}

    def step(self, action):
        ob, _, terminated, truncated, info = self._env.step(action)
        success = bool(info["success"])
        return self._obs(ob), float(success) - 1.0, terminated, truncated, {"is_success": success}

    def close(self):
        self._env.close()


gym.register("PointMazeMediumGoal-v0", entry_point=PointMazeGoalEnv)


def evaluate(policy: Callable[[np.ndarray], np.ndarray], *, episodes_per_task: int = 50, seed: int = 0) -> dict:
    """OGBench's evaluation: each of the 5 tasks ``episodes_per_task`` times; ``policy(concat(ob, goal)) -> action``.

    Returns ``{"tasks": [success rate of task 1..5], "overall": mean over tasks}``.
    """
    env = gym.make(MAZE_ENV)
    np.random.seed(seed)
    rates = []
    for task in range(1, N_TASKS + 1):
        wins = 0
        for _ in range(episodes_per_task):
            ob, info = env.reset(options={"task_id": task})
            goal = np.asarray(info["goal"])
            done, success = False, False
            while not done:
                action = np.clip(policy(np.concatenate([ob, goal]).astype(np.float32)), -1.0, 1.0)
                ob, _, terminated, truncated, info = env.step(action)
                success = success or bool(info["success"])
                done = terminated or truncated
            wins += success
        rates.append(wins / episodes_per_task)
    env.close()
    return {"tasks": rates, "overall": float(np.mean(rates))}
