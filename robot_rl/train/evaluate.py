"""Deterministic evaluation of a policy on held-out env seeds (the runner's eval.csv, ``robot-rl evaluate``)."""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import torch

from robot_rl.scale.envs import episode_success, flatten_goal_obs


@torch.no_grad()
def evaluate_episodes(policy: Callable[[torch.Tensor], torch.Tensor], env: gym.Env, seeds: list[int]) -> list[dict]:
    """Run one deterministic episode per seed with ``policy`` (raw obs ``[1, n_obs]`` -> action ``[1, n_act]``).

    Returns one dict per episode: ``seed``, ``return``, ``length``, ``success`` (NaN when the task has none),
    ``physics_error`` (bool).
    """
    rows = []
    for s in seeds:
        obs, info = env.reset(seed=int(s))
        total, length, physics_error = 0.0, 0, False
        while True:
            act = policy(torch.as_tensor(flatten_goal_obs(obs)).unsqueeze(0))[0].numpy()
            obs, rew, terminated, truncated, info = env.step(act)
            total += float(rew)
            length += 1
            physics_error |= bool(info.get("physics_error", False))
            if terminated or truncated:
                break
        rows.append({"seed": int(s), "return": total, "length": length, "success": episode_success(info),
                     "physics_error": physics_error})
    return rows
