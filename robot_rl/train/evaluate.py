"""Deterministic evaluation of a policy on held-out env seeds (the runner's eval.csv, ``robot-rl evaluate``)."""

from __future__ import annotations

import math
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch

from robot_rl.scale.envs import episode_success, flatten_goal_obs


@torch.no_grad()
def evaluate_episodes(policy: Callable[[torch.Tensor], torch.Tensor], env: gym.Env, seeds: list[int]) -> list[dict]:
    """Run one deterministic episode per seed with ``policy`` (raw obs ``[1, n_obs]`` -> action ``[1, n_act]``).

    Returns one dict per episode: ``seed``, ``return``, ``length``, ``success`` (NaN when the task has none),
    ``success_held_s`` (how long the episode ended in success without a break [s]: 0.5 = the last 0.5 s all
    successes; NaN without a success signal or control period), ``goal_distance`` (goal tasks: final distance
    between achieved and desired goal, else NaN), ``physics_error`` (bool).
    """
    dt = float(getattr(env.unwrapped, "control_dt", math.nan))
    rows = []
    for s in seeds:
        obs, info = env.reset(seed=int(s))
        total, length, physics_error, held = 0.0, 0, False, 0
        raw = getattr(env, "achieved_goal", None) is not None
        while True:
            act = policy(torch.as_tensor(flatten_goal_obs(obs)).unsqueeze(0))[0].numpy()
            obs, rew, terminated, truncated, info = env.step(act)
            total += float(rew)
            length += 1
            physics_error |= bool(info.get("physics_error", False))
            held = held + 1 if info.get("is_success", False) else 0
            if terminated or truncated:
                break
        success = episode_success(info)
        distance = math.nan
        if isinstance(obs, dict) or raw:
            achieved = obs["achieved_goal"] if isinstance(obs, dict) else env.achieved_goal
            desired = obs["desired_goal"] if isinstance(obs, dict) else np.asarray(obs)[-len(achieved):]
            distance = float(np.linalg.norm(np.asarray(achieved, np.float64) - np.asarray(desired, np.float64)))
        rows.append({"seed": int(s), "return": total, "length": length, "success": success,
                     "success_held_s": math.nan if math.isnan(success) else held * dt, "goal_distance": distance,
                     "physics_error": physics_error})
    return rows
