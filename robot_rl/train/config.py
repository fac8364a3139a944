"""Experiment configuration shared by every learner: environment, training loop, and the algorithm section.

A config file names its algorithm (``algo: sac``, ``ppo``, ``iql``, ``gciql``, ``gcbc`` or ``pets``);
``load_experiment`` picks the matching frozen
dataclass and loads the file strictly (unknown keys, wrong types, non-finite numbers are errors naming the key path).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from robot_rl.core.config import ConfigError, apply_overrides, from_dict, load_yaml

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

    def __post_init__(self):
        for name in ("total_steps", "log_every_steps", "eval_episodes", "checkpoint_every_steps", "torch_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.eval_every_steps < 0:
            raise ValueError(f"train.eval_every_steps must be >= 0, got {self.eval_every_steps}")
        if self.eval_seed_start < TRAIN_SEED_LIMIT:
            raise ValueError(f"train.eval_seed_start must be >= {TRAIN_SEED_LIMIT} so evaluation seeds are held out "
                             f"from training seeds, got {self.eval_seed_start}")


def _sac_experiment():
    from robot_rl.algos.sac import SacExperiment

    return SacExperiment


def _ppo_experiment():
    from robot_rl.algos.ppo import PpoExperiment

    return PpoExperiment


def _offline(module: str, cls: str):
    """Dataset-based experiments (IQL family): the class is imported only when its algo is chosen."""

    def load():
        import importlib

        return getattr(importlib.import_module(module), cls)

    return load


EXPERIMENTS = {
    "sac": _sac_experiment,
    "ppo": _ppo_experiment,
    "iql": _offline("robot_rl.algos.iql", "IqlExperiment"),
    "gciql": _offline("robot_rl.algos.gciql", "GcIqlExperiment"),
    "gcbc": _offline("robot_rl.algos.gcbc", "GcbcExperiment"),
    "pets": _offline("robot_rl.algos.pets", "PetsConfig"),  # model-based: its own loop (robot_rl.train.pets_run)
}


def experiment_class(algo: str):
    if algo not in EXPERIMENTS:
        raise ConfigError(f"unknown algo {algo!r}; choose one of {sorted(EXPERIMENTS)}", path="algo")
    return EXPERIMENTS[algo]()


def load_experiment(path: str | Path | None = None, overrides: tuple[str, ...] | list[str] = (), *,
                    raw: dict | None = None):
    """Load an experiment config (``SacExperiment``, ``PpoExperiment``, ..., ``PetsConfig``) from YAML +
    ``key=value`` overrides.
    """
    source = str(path) if path is not None else "<config>"
    if path is not None:
        raw = load_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError("expected a mapping at the top level", source=source)
    raw = apply_overrides(raw, overrides)
    algo = raw.get("algo")
    if algo is None:
        raise ConfigError(f"required key is missing ({', '.join(sorted(EXPERIMENTS))})", source=source, path="algo")
    if algo not in EXPERIMENTS:
        raise ConfigError(f"unknown algo {algo!r}; choose one of {sorted(EXPERIMENTS)}", source=source, path="algo")
    cls = EXPERIMENTS[algo]()
    return from_dict(cls, raw, source=source)

