"""Loading a training experiment config: the file's ``algo`` key picks the experiment dataclass.

A config file names its algorithm (``algo: sac``, ``ppo``, ``iql``, ``gciql``, ``gcbc`` or ``pets``; the table is
``robot_rl.algos.registry``); ``load_experiment`` loads the file strictly into that frozen dataclass (unknown keys,
wrong types, non-finite numbers are errors naming the key path). The shared ``env`` / ``train`` sections are
``robot_rl.core.experiment``.
"""

from __future__ import annotations

from pathlib import Path

from robot_rl.algos.registry import algo_spec
from robot_rl.core.config import ConfigError, apply_overrides, from_dict, load_yaml, overrides_named


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
    overrides = list(overrides)
    merged = apply_overrides(raw, overrides)
    with overrides_named(raw, overrides):
        cls = algo_spec(merged.get("algo"), source=source).config_class()
        return from_dict(cls, merged, source=source)
