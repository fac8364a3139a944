"""What the rollout layer reads and calls on a learner: the whole dependency of ``robot_rl.scale`` on the algorithms.

``robot_rl.scale`` sits below ``robot_rl.algos`` (docs/contracts.md, "Layers") and imports no learner; a learner
passes itself to the snapshot builders (``robot_rl.scale.worker``) and to the rollout loops
(``robot_rl.scale.offpolicy_rollout``, ``robot_rl.scale.ppo_rollout``), which use only the members listed here.
``SacLearner`` and ``PpoLearner`` satisfy them (tests/scale/test_scale_protocol.py checks it), so renaming one of
these members in a learner fails that test rather than a Ray run.

The rollout loops update two pieces of learner state in place exactly as the learner's own env loop does:
``pending_obs`` (raw observations for the normalizer) and ``finished_episodes`` (episode statistics); every member
used is public and listed here, so the coupling is written down in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch


@runtime_checkable
class SnapshotLearner(Protocol):
    """A learner whose acting policy can be copied into a worker snapshot (``robot_rl.scale.worker``)."""

    cfg: Any
    """Its algorithm section: ``actor_hidden``, ``activation``, ``normalize_obs``."""
    n_obs: int
    n_act: int
    actor: torch.nn.Module
    """MLP ``[n_obs] -> [n_act]`` (Gaussian mean) or ``[n_obs] -> [2 n_act]`` (tanh-Gaussian mean, raw log-std)."""
    normalizer: torch.nn.Module
    """``RunningNormalizer`` or ``nn.Identity``."""


@runtime_checkable
class GaussianSnapshotLearner(SnapshotLearner, Protocol):
    """A diagonal-Gaussian actor with a state-independent ``log_std [n_act]`` (PPO)."""

    log_std: torch.Tensor


@runtime_checkable
class OffPolicyLearner(SnapshotLearner, Protocol):
    """What ``offpolicy_train_until`` uses (SAC): replay, update schedule, episode statistics."""

    env_steps: int
    updates_due: float
    """Fractional updates owed (``utd_ratio`` per env step after ``cfg.learning_starts``)."""
    replay: Any
    """``add(obs, act, rew, next_obs, done)`` (``robot_rl.data.replay.ReplayBuffer``)."""
    pending_obs: list[np.ndarray]
    """Raw observations not yet folded into the normalizer."""
    finished_episodes: list[tuple[float, int, float]]
    """Finished episodes ``(return, length, success)`` since the last ``pop_stats``."""

    def update(self) -> None: ...


@runtime_checkable
class OnPolicyLearner(GaussianSnapshotLearner, Protocol):
    """What ``collect_ppo_rollout`` / ``ppo_train_until`` use (PPO): rollout storage, critic, normalizer, update."""

    env_steps: int
    iteration: int
    storage: Any
    """``robot_rl.data.rollout.RolloutStorage`` of ``[cfg.n_steps, cfg.num_envs]``."""
    critic: Callable[[torch.Tensor], torch.Tensor]
    """Normalized obs ``[..., n_obs]`` -> value ``[..., 1]``."""
    finished_episodes: list[tuple[float, int, float]]
    """Finished episodes ``(return, length, success)`` since the last ``pop_stats``."""

    def normalize(self, obs: torch.Tensor, update: bool) -> torch.Tensor:
        """Normalized observations (``update``: fold them into the running statistics first)."""

    def update(self) -> None:
        """One PPO update on the filled rollout storage."""
