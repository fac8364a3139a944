"""The sections every training experiment config shares: ``env`` and ``train`` (the loop), and the seed split.

Every algorithm's experiment dataclass (``SacExperiment``, ``PpoExperiment``, ``IqlExperiment``, ...) embeds these, so
they live below the algorithms; ``robot_rl.train.config.load_experiment`` loads a whole experiment file strictly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

TRAIN_SEED_LIMIT = 1_000_000_000
"""Training episodes use env seeds below this; evaluation seeds start at or above it (held-out randomization)."""


@dataclass(frozen=True)
class EnvConfig:
    id: str
    """Registered env id (``robot_rl/...``; a plain gymnasium id such as ``Pendulum-v1`` also works)."""
    randomization: str | None = None
    """Domain-randomization profile used in training *and* evaluation (name in ``sim/randomization/``, or a
    path); null = off. Evaluation draws its randomization from held-out seeds (>= 1e9, never used in training)."""

    def __post_init__(self):
        if not self.id:
            raise ValueError("env.id must not be empty")


@dataclass(frozen=True)
class TrainConfig:
    total_steps: int = 100_000
    """Environment steps to train for (summed over parallel envs)."""
    log_every_steps: int = 1_000
    """Env steps between rows of metrics.csv / TensorBoard scalars."""
    eval_every_steps: int = 10_000
    """Env steps between deterministic evaluations (eval.csv); 0 = only at the end."""
    eval_episodes: int = 10
    """Episodes per evaluation, each on its own held-out randomization seed."""
    eval_seed_start: int = TRAIN_SEED_LIMIT
    """First evaluation env seed; episode i uses ``eval_seed_start + i`` (the same seeds at every evaluation)."""
    checkpoint_every_steps: int = 10_000
    """Env steps between resumable checkpoints (checkpoints/latest.pt); the final step always checkpoints."""
    torch_threads: int = 1
    """``torch.set_num_threads``; 1 is fastest for these small nets on 2 cores (see docs/training.md)."""
    deterministic: bool = False
    """Call ``torch.use_deterministic_algorithms(True)``. Not needed on CPU, where every kernel these learners use
    is already deterministic (same seed -> bit-identical runs is tested without it); it costs a ~10 s import of
    ``torch._inductor``. Turn it on for accelerator runs."""
    progress: bool = True
    """Show a tqdm progress bar (steps/s, ETA) on stderr."""
    init_from: str | None = field(default=None, metadata={"hash": "unless_default"})
    """Fine-tuning: a training checkpoint (another run's ``checkpoints/latest.pt``, same algorithm and network sizes)
    whose networks, input normalizer and optimizer state (SAC: and replay buffer, which new transitions then
    replace first-in first-out) this run starts from; step counters and episode statistics start at zero, and
    ``total_steps`` counts this run's steps. E.g. a trained policy on the re-centred randomization profile
    ``robot-rl sysid`` writes. null = from scratch. (SAC and PPO.)"""

    def __post_init__(self):
        for name in ("total_steps", "log_every_steps", "eval_episodes", "checkpoint_every_steps", "torch_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.eval_every_steps < 0:
            raise ValueError(f"train.eval_every_steps must be >= 0, got {self.eval_every_steps}")
        if self.eval_seed_start < TRAIN_SEED_LIMIT:
            raise ValueError(f"train.eval_seed_start must be >= {TRAIN_SEED_LIMIT} so evaluation seeds are held out "
                             f"from training seeds, got {self.eval_seed_start}")
