"""The one table of training algorithms: ``algo:`` name -> experiment config class, learner and run loop.

Config loading (``robot_rl.train.config.load_experiment``), ``robot_rl.train.runner.make_learner`` and the runner's
choice of loop all read this table; adding an algorithm is one row here (and its module).

Run loops (``AlgoSpec.loop``):

- ``off_policy``: env steps and updates interleaved (SAC); the runner's segment loop drives the learner.
- ``on_policy``: whole rollout + update iterations (PPO); the runner's segment loop drives the learner.
- ``offline``: gradient steps on a dataset, evaluated in the env (IQL, GC-IQL, HIQL, GCBC); the runner's segment loop.
- ``pets``: episodic model-based loop with its own run-directory writer (``robot_rl.train.pets_run``).

Classes are named as ``"module:attribute"`` and imported when an algorithm is chosen, not when this table is
read: loading a PPO config must not import the PETS planners (numba kernels) or the offline dataset readers (h5py).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal

from robot_rl.core.config import ConfigError

Loop = Literal["off_policy", "on_policy", "offline", "pets"]


def _resolve(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class AlgoSpec:
    name: str
    """The ``algo:`` value of a config file."""
    config: str
    """Experiment config dataclass, ``"module:Class"``."""
    loop: Loop
    """Which training loop runs it (see the module docstring)."""
    learner: str | None = None
    """Learner class, ``"module:Class"``, built as ``Learner(cfg)``; None for loops that build no learner (PETS)."""

    def config_class(self) -> type:
        return _resolve(self.config)

    def make_learner(self, cfg):
        """The learner the runner's segment loop drives (``robot_rl.train.runner`` lists its methods)."""
        if self.learner is None:
            raise ValueError(f"algo {self.name!r} runs the {self.loop!r} loop, which builds no learner")
        return _resolve(self.learner)(cfg)


ALGOS: dict[str, AlgoSpec] = {spec.name: spec for spec in (
    AlgoSpec("sac", "robot_rl.algos.sac:SacExperiment", "off_policy", "robot_rl.algos.sac:SacLearner"),
    AlgoSpec("ppo", "robot_rl.algos.ppo:PpoExperiment", "on_policy", "robot_rl.algos.ppo:PpoLearner"),
    AlgoSpec("iql", "robot_rl.algos.iql:IqlExperiment", "offline", "robot_rl.algos.iql:IqlLearner"),
    AlgoSpec("gciql", "robot_rl.algos.gciql:GcIqlExperiment", "offline", "robot_rl.algos.gciql:GcIqlLearner"),
    AlgoSpec("hiql", "robot_rl.algos.hiql:HiqlExperiment", "offline", "robot_rl.algos.hiql:HiqlLearner"),
    AlgoSpec("gcbc", "robot_rl.algos.gcbc:GcbcExperiment", "offline", "robot_rl.algos.gcbc:GcbcLearner"),
    AlgoSpec("pets", "robot_rl.algos.pets:PetsConfig", "pets"),
)}


def algo_spec(algo: object, *, source: str | None = None) -> AlgoSpec:
    """The table row of ``algo``; a ``ConfigError`` at key ``algo`` naming the choices when there is none."""
    if algo is None:
        raise ConfigError(f"required key is missing (choose one of {sorted(ALGOS)})", source=source, path="algo")
    if not isinstance(algo, str) or algo not in ALGOS:
        raise ConfigError(f"unknown algo {algo!r}; choose one of {sorted(ALGOS)}", source=source, path="algo")
    return ALGOS[algo]
