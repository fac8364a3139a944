"""Config sections that switch rollouts between the local vector env and Ray workers (``rollout``, ``ray``).

Plain frozen dataclasses (no ray import) so experiment configs can embed them: ``rollout.backend: ray``,
``rollout.workers: 2``, ``ray.address: 127.0.0.1:6379``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class RolloutConfig:
    backend: Literal["local", "ray"] = "local"
    """``local``: the learner steps its own vector env (today's path). ``ray``: rollout-worker actors step
    ``workers`` vector envs and the learner pulls batches from them."""
    workers: int = 2
    """Number of rollout workers (Ray actors); the algorithm's envs are split evenly between them."""
    cpus_per_worker: float = 1.0
    """Ray CPUs reserved per rollout worker."""
    max_restarts: int = 3
    """Times Ray restarts a worker that died (process killed, node lost); its in-flight batch is discarded."""
    max_staleness: int | None = None
    """Oldest acceptable batch, in policy versions behind the learner: null = per algorithm (0 for PPO: stale
    batches are dropped; unlimited for off-policy SAC / PETS data collection: stale batches are kept)."""
    batch_steps: int = 64
    """Steps per env in one worker batch for off-policy learners (SAC, PETS data); PPO uses ``ppo.n_steps``."""
    batch_timeout_s: float = 300.0
    """Seconds to wait for one worker batch before the run fails with an error naming the worker."""

    def __post_init__(self):
        if self.workers < 1:
            raise ValueError(f"rollout.workers must be >= 1, got {self.workers}")
        if self.cpus_per_worker <= 0:
            raise ValueError(f"rollout.cpus_per_worker must be > 0, got {self.cpus_per_worker}")
        if self.max_restarts < 0:
            raise ValueError(f"rollout.max_restarts must be >= 0, got {self.max_restarts}")
        if self.max_staleness is not None and self.max_staleness < 0:
            raise ValueError(f"rollout.max_staleness must be >= 0 or null, got {self.max_staleness}")
        if self.batch_steps < 1:
            raise ValueError(f"rollout.batch_steps must be >= 1, got {self.batch_steps}")
        if self.batch_timeout_s <= 0:
            raise ValueError(f"rollout.batch_timeout_s must be > 0, got {self.batch_timeout_s}")


@dataclass(frozen=True)
class RayConfig:
    address: str | None = None
    """Existing cluster to join (``host:port`` of the head's GCS, or ``auto``); null = start a private local
    cluster bound to 127.0.0.1 for this process."""
    num_cpus: int | None = None
    """CPUs of the private local cluster (null = all cores); ignored when joining ``address``."""

    def __post_init__(self):
        if self.address is not None and not self.address.strip():
            raise ValueError("ray.address must be null or a non-empty host:port / 'auto'")
        if self.num_cpus is not None and self.num_cpus < 1:
            raise ValueError(f"ray.num_cpus must be >= 1 or null, got {self.num_cpus}")
