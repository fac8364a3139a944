"""Flat transition arrays for offline learning and hindsight goal relabeling (batched numpy).

Hindsight relabeling (Andrychowicz et al. 2017, HER) replaces the commanded goal of a transition by a goal the
data actually reached, so failed episodes still teach how to reach *something*. The goal of each sampled transition
``(s_t, a_t, s_t+1)`` comes from a configurable mixture:

* ``future``: the achieved goal of a uniformly drawn later state of the same episode, ``j ~ U{t+1, ..., T}``;
* ``geometric``: ``j = min(t + k, T)`` with ``k ~ Geometric(1 - gamma)`` (k >= 1), the discounted state occupancy
  used by goal-conditioned IQL / OGBench (Park et al. 2024);
* ``random``: the achieved goal of any state of the dataset;
* ``original``: the episode's commanded (desired) goal.

Indices are computed by pure functions of explicit uniform draws (``future_index``, ``geometric_index``), so tests
check them against hand-worked numbers. Rewards are recomputed for the new goal: 0 on success (distance of the next
achieved goal to the goal within ``success_distance``), -1 otherwise (the Gymnasium-Robotics sparse convention);
with ``terminate_on_success`` the success also ends the bootstrapped return (``mask = 0``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from robot_rl.data.dataset import Episode

GOAL_SOURCES = ("future", "geometric", "random", "original")


def flat_observations(observations, keys: tuple[str, ...] = ("observation", "desired_goal")) -> np.ndarray:
    """The policy input: a Box observation as is; a Dict observation as ``concat(observation, desired_goal)``."""
    if isinstance(observations, dict):
        return np.concatenate([np.asarray(observations[k], dtype=np.float32) for k in keys], axis=-1)
    return np.asarray(observations, dtype=np.float32)


@dataclass
class Transitions:
    """All transitions of a list of episodes. N = total steps.

    Attributes:
        observations / next_observations: ``(N, n_obs)`` float32 (flat policy input, see ``flat_observations``).
        actions: ``(N, n_act)`` float32; rewards ``(N,)`` float32; terminals ``(N,)`` float32 (1 = terminated,
            not truncated: a time-limit end still bootstraps).

    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminals: np.ndarray

    @classmethod
    def from_episodes(cls, episodes: list[Episode]) -> Transitions:
        obs = [flat_observations(e.observations) for e in episodes]
        return cls(observations=np.concatenate([o[:-1] for o in obs]),
                   actions=np.concatenate([e.actions for e in episodes]).astype(np.float32),
                   rewards=np.concatenate([e.rewards for e in episodes]).astype(np.float32),
                   next_observations=np.concatenate([o[1:] for o in obs]),
                   terminals=np.concatenate([e.terminations for e in episodes]).astype(np.float32))

    def __len__(self) -> int:
        return len(self.actions)

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        idx = rng.integers(0, len(self), size=batch_size)
        return {"observations": self.observations[idx], "actions": self.actions[idx], "rewards": self.rewards[idx],
                "next_observations": self.next_observations[idx], "terminals": self.terminals[idx]}


def future_index(t: np.ndarray, last: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Row of a uniformly drawn later state: ``t+1 + floor(u (last - t))`` in ``[t+1, last]``; u in [0, 1)."""
    return t + 1 + np.minimum(np.floor(u * (last - t)).astype(np.int64), last - t - 1)


def geometric_index(t: np.ndarray, last: np.ndarray, u: np.ndarray, gamma: float) -> np.ndarray:
    """Row ``min(t + k, last)`` with ``k ~ Geometric(1 - gamma)`` on {1, 2, ...} drawn by inversion from u in [0, 1).

    ``P(k) = (1 - gamma) gamma^(k-1)``; inversion: ``k = 1 + floor(log(1 - u) / log(gamma))``.
    """
    k = 1 + np.floor(np.log1p(-u) / np.log(gamma)).astype(np.int64)
    return np.minimum(t + k, last)


@dataclass(frozen=True)
class RelabelConfig:
    """Goal mixture of ``GoalEpisodes.sample`` (probabilities are normalized; sources in ``GOAL_SOURCES``)."""

    p_future: float = 0.3
    """Share of goals from a uniformly drawn future state of the same episode."""
    p_geometric: float = 0.2
    """Share of goals from a geometrically distributed future offset (discount ``gamma``)."""
    p_random: float = 0.3
    """Share of goals from random dataset states (teaches the value of being far from a goal)."""
    p_original: float = 0.2
    """Share of transitions keeping the commanded goal."""
    gamma: float = 0.99
    """Discount of the geometric offset distribution."""
    success_distance: float = 0.05
    """Success threshold on the Euclidean goal distance [goal units, m for positions]."""
    terminate_on_success: bool = True
    """Reaching the goal ends the bootstrapped return (mask 0)."""

    def __post_init__(self):
        p = self.probabilities()
        if np.any(p < 0) or not np.isfinite(p).all() or p.sum() <= 0:
            raise ValueError(f"goal mixture probabilities must be >= 0 with a positive sum, got {p.tolist()}")
        if not 0 < self.gamma < 1:
            raise ValueError(f"gamma must be in (0, 1), got {self.gamma}")
        if self.success_distance <= 0:
            raise ValueError(f"success_distance must be > 0, got {self.success_distance}")

    def probabilities(self) -> np.ndarray:
        return np.array([self.p_future, self.p_geometric, self.p_random, self.p_original], dtype=np.float64)


class GoalEpisodes:
    """Goal-conditioned episodes (Dict observations) as flat arrays for batched relabeled sampling.

    M = total observations (sum of T+1), N = total transitions (sum of T). Row ``r`` of the observation arrays;
    ``trans_row[n]`` is the observation row of transition n and ``last_row[n]`` the last row of its episode.
    """

    def __init__(self, episodes: list[Episode], *, obs_key: str = "observation",
                 achieved_key: str = "achieved_goal", desired_key: str = "desired_goal"):
        if not episodes or not isinstance(episodes[0].observations, dict):
            raise ValueError("GoalEpisodes needs episodes with Dict observations "
                             f"({obs_key!r}, {achieved_key!r}, {desired_key!r})")
        self.obs = np.concatenate([e.observations[obs_key] for e in episodes]).astype(np.float32)
        self.achieved = np.concatenate([e.observations[achieved_key] for e in episodes]).astype(np.float32)
        self.desired = np.concatenate([e.observations[desired_key] for e in episodes]).astype(np.float32)
        self.actions = np.concatenate([e.actions for e in episodes]).astype(np.float32)
        rows, lasts, start = [], [], 0
        for e in episodes:
            n = len(e)
            rows.append(start + np.arange(n))
            lasts.append(np.full(n, start + n))
            start += n + 1
        self.trans_row = np.concatenate(rows)
        self.last_row = np.concatenate(lasts)

    def __len__(self) -> int:
        return len(self.actions)

    def normalizer_sample(self, seed: int) -> np.ndarray:
        """``[M, n_obs + n_goal]``: every observation paired with the achieved goal of a random row, the inputs a
        goal-conditioned network sees (observation statistics for its normalizer).
        """
        rows = np.random.default_rng(seed).integers(0, len(self.obs), size=len(self.obs))
        return np.concatenate([self.obs, self.achieved[rows]], axis=1)

    def goal_rows(self, trans: np.ndarray, source: np.ndarray, u: np.ndarray, u_random: np.ndarray,
                  gamma: float) -> np.ndarray:
        """Row whose achieved goal becomes the goal, per transition; ``-1`` marks ``original``.

        Args:
            trans: transition indices ``(B,)``.
            source: index into ``GOAL_SOURCES`` per transition ``(B,)``.
            u: uniform draws in [0, 1) ``(B,)`` for the in-episode offset (future / geometric).
            u_random: uniform draws in [0, 1) ``(B,)`` for the dataset row (random).
            gamma: discount of the geometric offset.

        """
        t, last = self.trans_row[trans], self.last_row[trans]
        rows = np.full(len(trans), -1, dtype=np.int64)
        for code, fn in ((0, lambda m: future_index(t[m], last[m], u[m])),
                         (1, lambda m: geometric_index(t[m], last[m], u[m], gamma)),
                         (2, lambda m: np.minimum((u_random[m] * len(self.obs)).astype(np.int64), len(self.obs) - 1))):
            m = source == code
            if m.any():
                rows[m] = fn(m)
        return rows

    def sample(self, batch_size: int, rng: np.random.Generator, cfg: RelabelConfig,
               reward_fn: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """A relabeled batch: ``observations``/``next_observations`` = ``concat(obs, goal)`` ``(B, d + g)``,
        ``actions``, ``rewards`` (0 success / -1), ``masks`` (0 where the goal is reached and
        ``terminate_on_success``), ``goals`` ``(B, g)``, ``success`` ``(B,)``.

        ``reward_fn(achieved (B, g), goal (B, g)) -> (B,)`` overrides the distance reward (e.g. the env's
        ``compute_reward``); success is then ``reward >= 0``.
        """
        trans = rng.integers(0, len(self), size=batch_size)
        p = cfg.probabilities()
        source = rng.choice(len(GOAL_SOURCES), size=batch_size, p=p / p.sum())
        rows = self.goal_rows(trans, source, rng.random(batch_size), rng.random(batch_size), cfg.gamma)
        return self.assemble(trans, rows, cfg, reward_fn)

    def assemble(self, trans: np.ndarray, rows: np.ndarray, cfg: RelabelConfig,
                 reward_fn: Callable | None = None) -> dict[str, np.ndarray]:
        """Batch for transitions ``trans`` with goals from ``rows`` (-1 = the original desired goal)."""
        r = self.trans_row[trans]
        goals = np.where((rows >= 0)[:, None], self.achieved[np.maximum(rows, 0)], self.desired[r])
        next_achieved = self.achieved[r + 1]
        if reward_fn is None:
            success = np.linalg.norm(next_achieved - goals, axis=-1) <= cfg.success_distance
            rewards = np.where(success, 0.0, -1.0)
        else:
            rewards = np.asarray(reward_fn(next_achieved, goals), dtype=np.float64)
            success = rewards >= 0
        masks = (~success).astype(np.float32) if cfg.terminate_on_success else np.ones(len(trans), np.float32)
        return {"observations": np.concatenate([self.obs[r], goals], axis=1),
                "next_observations": np.concatenate([self.obs[r + 1], goals], axis=1),
                "actions": self.actions[trans], "rewards": rewards.astype(np.float32), "masks": masks,
                "goals": goals.astype(np.float32), "success": success}
