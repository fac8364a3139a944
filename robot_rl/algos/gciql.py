"""Goal-conditioned IQL with hindsight relabeling (IQL of Kostrikov et al. 2022 on goal-relabeled batches, as in
OGBench's GCIQL, Park et al. 2024).

Every batch is relabeled (``robot_rl.data.relabel``): the critic and value see goals from the ``relabel`` mixture
(future / geometric / random / original), with sparse rewards 0 on reaching the goal and -1 otherwise and the
return cut at success; the actor is trained by advantage-weighted regression on goals from ``actor_relabel``
(by default future states of the same trajectory, which are reachable from the state by construction). The losses
are IQL's (``robot_rl.algos.iql``: ``expectile_loss``, ``td_target``, ``awr_weights``). Input of every network and of
the exported policy: ``concat(observation, goal)`` (docs/contracts.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from robot_rl.algos.iql import DatasetConfig, IqlConfig, IqlLearner
from robot_rl.core.experiment import EnvConfig, TrainConfig
from robot_rl.data.relabel import GoalEpisodes, RelabelConfig


@dataclass(frozen=True)
class GcIqlExperiment:
    algo: Literal["gciql"]
    """Algorithm selector."""
    env: EnvConfig
    """Goal-conditioned environment for evaluation (Dict observations)."""
    dataset: DatasetConfig
    """The offline data (Dict observations with achieved_goal / desired_goal)."""
    seed: int = 0
    """Seed of network initialization and batch sampling (0 <= seed < 1000)."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Loop: ``total_steps`` counts gradient steps here."""
    gciql: IqlConfig = field(default_factory=lambda: IqlConfig(expectile=0.9, beta=10.0))
    """IQL hyperparameters (OGBench GCIQL defaults: expectile 0.9, AWR inverse temperature 10)."""
    relabel: RelabelConfig = field(default_factory=lambda: RelabelConfig(
        p_future=0.0, p_geometric=0.5, p_random=0.3, p_original=0.2))
    """Goal mixture of the value / critic batches."""
    actor_relabel: RelabelConfig = field(default_factory=lambda: RelabelConfig(
        p_future=1.0, p_geometric=0.0, p_random=0.0, p_original=0.0))
    """Goal mixture of the actor batches (AWR)."""

    def __post_init__(self):
        if not 0 <= self.seed < 1000:
            raise ValueError(f"seed must be in [0, 1000), got {self.seed}")

    def make_learner(self):
        """``GcIqlLearner(self)``, as the runner builds it from ``robot_rl.algos.registry``."""
        return GcIqlLearner(self)


class GcIqlLearner(IqlLearner):
    """IQL whose batches are relabeled with goals; see the module docstring."""

    algo = "gciql"

    def __init__(self, cfg: GcIqlExperiment):
        super().__init__(cfg, cfg.gciql)

    def _setup_data(self) -> None:
        self.goals = GoalEpisodes(self.dataset.episodes)
        self.n_obs = self.goals.obs.shape[1] + self.goals.achieved.shape[1]

    def _normalizer_sample(self) -> np.ndarray:
        return self.goals.normalizer_sample(self.seed)

    def sample(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        c, g = self.exp, self.goals
        n = self.cfg.batch_size
        trans = rng.integers(0, len(g), size=n)
        rows = g.goal_rows(trans, _sources(rng, c.relabel, n), rng.random(n), rng.random(n), c.relabel.gamma)
        batch = g.assemble(trans, rows, c.relabel)
        a_rows = g.goal_rows(trans, _sources(rng, c.actor_relabel, n), rng.random(n), rng.random(n),
                             c.actor_relabel.gamma)
        batch["actor_observations"] = g.assemble(trans, a_rows, c.actor_relabel)["observations"]
        return batch


def _sources(rng: np.random.Generator, cfg: RelabelConfig, n: int) -> np.ndarray:
    p = cfg.probabilities()
    return rng.choice(len(p), size=n, p=p / p.sum())
