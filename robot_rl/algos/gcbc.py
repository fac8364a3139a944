"""Goal-conditioned behavior cloning with hindsight relabeling (GCBC; Ghosh et al. 2021 "GCSL", Lynch et al. 2020).

Maximize ``log pi(a_t | s_t, g)`` where ``g`` is the achieved goal of a later state of the same trajectory (future
or geometric relabeling, ``robot_rl.data.relabel``): every trajectory demonstrates how to reach where it went.
Same Gaussian policy as IQL (mean ``tanh(net)``, state-independent log std), so the two compare on equal terms;
unlike IQL it weights every action equally, good or bad, which is what goal-conditioned IQL improves on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn

from robot_rl.algos.iql import DatasetConfig
from robot_rl.core.experiment import EnvConfig, TrainConfig
from robot_rl.data.dataset import load_training_dataset
from robot_rl.data.relabel import GoalEpisodes, RelabelConfig
from robot_rl.nets import PolicyModule, gaussian_log_prob, make_normalizer, mlp


@dataclass(frozen=True)
class GcbcConfig:
    batch_size: int = 256
    """Transitions per gradient step."""
    hidden: tuple[int, ...] = (256, 256)
    """Hidden widths of the policy."""
    activation: str = "relu"
    """Hidden activation."""
    lr: float = 3e-4
    """Adam learning rate."""
    normalize_obs: bool = True
    """Normalize inputs with the dataset's statistics (inside the exported policy)."""

    def __post_init__(self):
        if self.batch_size < 1 or self.lr <= 0:
            raise ValueError(f"batch_size and lr must be positive, got {self.batch_size}, {self.lr}")


@dataclass(frozen=True)
class GcbcExperiment:
    algo: Literal["gcbc"]
    """Algorithm selector."""
    env: EnvConfig
    """Goal-conditioned environment for evaluation."""
    dataset: DatasetConfig
    """The offline data (Dict observations)."""
    seed: int = 0
    """Seed of initialization and batch sampling (0 <= seed < 1000)."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Loop: ``total_steps`` counts gradient steps."""
    gcbc: GcbcConfig = field(default_factory=GcbcConfig)
    """Hyperparameters."""
    relabel: RelabelConfig = field(default_factory=lambda: RelabelConfig(
        p_future=1.0, p_geometric=0.0, p_random=0.0, p_original=0.0))
    """Goal mixture (hindsight: future states of the same trajectory)."""

    def __post_init__(self):
        if not 0 <= self.seed < 1000:
            raise ValueError(f"seed must be in [0, 1000), got {self.seed}")

    def make_learner(self):
        """``GcbcLearner(self)``, as the runner builds it from ``robot_rl.algos.registry``."""
        return GcbcLearner(self)


def bc_loss(mean: torch.Tensor, log_std: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of the data's actions, ``-mean(log pi(a|s,g))``."""
    return -gaussian_log_prob(mean, log_std, action).mean()


class GcbcLearner:
    """GCBC with the learner interface of ``robot_rl.train.runner`` (``env_steps`` = gradient steps)."""

    algo = "gcbc"

    def __init__(self, cfg: GcbcExperiment):
        self.exp, self.cfg, self.seed = cfg, cfg.gcbc, cfg.seed
        c = self.cfg
        torch.manual_seed(cfg.seed)
        self.dataset = load_training_dataset(cfg.dataset.path)
        self.goals = g = GoalEpisodes(self.dataset.episodes)
        self.n_obs = g.obs.shape[1] + g.achieved.shape[1]
        self.n_act = g.actions.shape[1]
        fit = g.normalizer_sample(self.seed) if c.normalize_obs else None
        self.normalizer = make_normalizer(self.n_obs, c.normalize_obs, fit)
        self.actor = mlp(self.n_obs, self.n_act, c.hidden, c.activation)
        self.log_std = nn.Parameter(torch.zeros(self.n_act))
        self.opt = torch.optim.Adam([*self.actor.parameters(), self.log_std], lr=c.lr)
        self.env_steps, self.segment = 0, 0
        self.rng = np.random.default_rng([self.seed, 0])
        self._loss_sum, self._loss_n = 0.0, 0

    def begin_segment(self, segment: int) -> None:
        self.segment = int(segment)
        self.rng = np.random.default_rng([self.seed, self.segment])

    def train_until(self, target_step: int) -> None:
        g, rc = self.goals, self.exp.relabel
        while self.env_steps < target_step:
            b = g.sample(self.cfg.batch_size, self.rng, rc)
            obs = self.normalizer(torch.as_tensor(b["observations"]))
            loss = bc_loss(torch.tanh(self.actor(obs)), self.log_std, torch.as_tensor(b["actions"]))
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            self._loss_sum += loss.item()
            self._loss_n += 1
            self.env_steps += 1

    def pop_stats(self) -> dict[str, float]:
        out = {"bc_loss": self._loss_sum / self._loss_n if self._loss_n else float("nan"),
               "updates": float(self.env_steps)}
        self._loss_sum, self._loss_n = 0.0, 0
        return out

    def policy_module(self) -> PolicyModule:
        return PolicyModule(self.normalizer, self.actor, self.n_act, "tanh")

    def policy_spec(self) -> dict:
        return {"n_obs": self.n_obs, "n_act": self.n_act, "n_out": self.n_act, "hidden": list(self.cfg.hidden),
                "activation": self.cfg.activation, "squash": "tanh", "normalize_obs": self.cfg.normalize_obs,
                "state_dict": self.policy_module().state_dict()}

    def state_dict(self) -> dict:
        return {"actor": self.actor.state_dict(), "log_std": self.log_std.detach().clone(),
                "normalizer": self.normalizer.state_dict(), "opt": self.opt.state_dict(),
                "env_steps": self.env_steps, "segment": self.segment}

    def load_state_dict(self, s: dict) -> None:
        self.actor.load_state_dict(s["actor"])
        self.normalizer.load_state_dict(s["normalizer"])
        self.opt.load_state_dict(s["opt"])
        with torch.no_grad():
            self.log_std.copy_(s["log_std"])
        self.env_steps, self.segment = s["env_steps"], s["segment"]

    def close(self) -> None:
        pass
