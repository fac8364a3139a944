"""Implicit Q-Learning (Kostrikov, Nair, Levine 2022, "Offline RL with Implicit Q-Learning"), offline, from an
episode dataset (``robot-rl collect`` / bag import).

Three losses, each a small pure function below:

* value: ``L_V = E[ L2^tau(Q_target(s, a) - V(s)) ]`` with the expectile loss ``L2^tau(u) = |tau - 1(u < 0)| u^2``
  (paper eq. 5); ``tau > 0.5`` makes V an upper expectile of Q over the data's actions, without querying unseen ones;
* Q: ``L_Q = E[ (r + gamma (1 - done) V(s') - Q_i(s, a))^2 ]`` for both critics (eq. 6);
* actor: advantage-weighted regression ``L_pi = -E[ min(exp(beta (Q_target(s, a) - V(s))), w_max) log pi(a|s) ]``
  (eq. 7; the clip at ``w_max`` = 100 as in the authors' code), or with ``actor_loss: ddpgbc`` DDPG+BC
  ``L_pi = -E[ Q(s, mu(s)) ] / E[|Q|] - alpha E[ log N(a; mu(s), 1) ]`` (Fujimoto & Gu 2021; the policy extraction
  of OGBench's GCIQL, Park et al. 2024, which finds it ahead of AWR on most datasets).

Policy: Gaussian with mean ``tanh(net(s))`` and a state-independent log std (the authors' parametrization); the
deployable module is ``PolicyModule(normalizer, net, n_act, "tanh")``, so ``robot_rl.train.load_policy`` and the
ONNX export read it like a SAC policy. ``IqlLearner`` follows the learner interface of ``robot_rl.train.runner``
with ``env_steps`` counting gradient steps (evaluation still runs in the env).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn

from robot_rl.core.experiment import EnvConfig, TrainConfig
from robot_rl.data.dataset import load_training_dataset
from robot_rl.data.relabel import Transitions
from robot_rl.nets import EnsembleMLP, PolicyModule, gaussian_log_prob, make_normalizer, mlp


@dataclass(frozen=True)
class DatasetConfig:
    path: str
    """Episode dataset directory (``robot-rl collect --out DIR``); loaded with every semantic check."""


@dataclass(frozen=True)
class IqlConfig:
    batch_size: int = 256
    """Transitions per gradient step."""
    hidden: tuple[int, ...] = (256, 256)
    """Hidden widths of actor, critics and value network."""
    activation: str = "relu"
    """Hidden activation (relu, tanh, elu, silu, gelu)."""
    lr: float = 3e-4
    """Adam learning rate of all three networks."""
    gamma: float = 0.99
    """Discount per control step."""
    expectile: float = 0.7
    """tau of the expectile value loss (0.7 for locomotion, 0.9 for AntMaze in the paper)."""
    beta: float = 3.0
    """Inverse temperature of the advantage weights (paper: 3.0 locomotion, 10.0 AntMaze)."""
    max_weight: float = 100.0
    """Clip of the advantage weights exp(beta A)."""
    polyak: float = 0.005
    """Target critic update rate."""
    normalize_obs: bool = True
    """Normalize observations with the dataset's mean / std (stored inside the exported policy)."""
    actor_loss: Literal["awr", "ddpgbc"] = field(default="awr", metadata={"hash": "unless_default"})
    """Policy extraction: ``awr`` (advantage-weighted regression, weights ``exp(beta A)``) or ``ddpgbc`` (climb the
    critic at the policy's mean action, Q normalized by its mean magnitude, plus ``alpha`` x the log-likelihood of the
    data's action under a unit-std Gaussian around the mean)."""
    alpha: float = field(default=0.3, metadata={"hash": "unless_default"})
    """Behaviour-cloning weight of ``ddpgbc`` (OGBench: 0.3 by default, 0.003 on PointMaze)."""
    value_layer_norm: bool = field(default=False, metadata={"hash": "unless_default"})
    """Layer normalization after every hidden activation of the value and critic nets, as in OGBench's agents (with
    GELU). On OGBench's pointmaze at 256-wide nets it did not help (bench/bench_ogbench.py)."""

    def __post_init__(self):
        if self.alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {self.alpha}")
        if not 0.5 <= self.expectile < 1:
            raise ValueError(f"expectile must be in [0.5, 1), got {self.expectile}")
        if not 0 < self.gamma < 1 or not 0 < self.polyak <= 1:
            raise ValueError(f"gamma must be in (0, 1) and polyak in (0, 1], got {self.gamma}, {self.polyak}")
        if self.batch_size < 1 or self.lr <= 0 or self.beta < 0 or self.max_weight <= 0:
            raise ValueError("batch_size, lr, max_weight must be positive and beta >= 0")


@dataclass(frozen=True)
class IqlExperiment:
    algo: Literal["iql"]
    """Algorithm selector."""
    env: EnvConfig
    """Environment used for evaluation (and whose spaces the dataset must match)."""
    dataset: DatasetConfig
    """The offline data."""
    seed: int = 0
    """Seed of network initialization and batch sampling (0 <= seed < 1000)."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Loop: ``total_steps`` counts gradient steps here."""
    iql: IqlConfig = field(default_factory=IqlConfig)
    """IQL hyperparameters."""

    def __post_init__(self):
        if not 0 <= self.seed < 1000:
            raise ValueError(f"seed must be in [0, 1000), got {self.seed}")

    def make_learner(self):
        """``IqlLearner(self)``, as the runner builds it from ``robot_rl.algos.registry``."""
        return IqlLearner(self)


# --------------------------------------------------------------------------- losses (pure functions)


def expectile_loss(diff: torch.Tensor, tau: float) -> torch.Tensor:
    """``mean(|tau - 1(diff < 0)| diff^2)`` with ``diff = Q - V``. Shape ``[B] -> []``."""
    weight = torch.where(diff < 0, 1.0 - tau, tau)
    return (weight * diff.square()).mean()


def td_target(rew: torch.Tensor, mask: torch.Tensor, next_v: torch.Tensor, gamma: float) -> torch.Tensor:
    """``r + gamma mask V(s')`` (mask = 0 at terminal transitions). Shapes ``[B]``."""
    return rew + gamma * mask * next_v


def awr_weights(adv: torch.Tensor, beta: float, max_weight: float) -> torch.Tensor:
    """``min(exp(beta adv), max_weight)``, computed as ``exp(min(beta adv, log max_weight))`` (no overflow)."""
    return torch.exp(torch.clamp(beta * adv, max=math.log(max_weight)))


def awr_actor_loss(weights: torch.Tensor, log_prob: torch.Tensor) -> torch.Tensor:
    """``-mean(w log pi(a|s))`` with the weights treated as constants."""
    return -(weights.detach() * log_prob).mean()


def ddpgbc_actor_loss(q_pi: torch.Tensor, bc_log_prob: torch.Tensor, alpha: float) -> torch.Tensor:
    """``-mean(Q(s, mu(s))) / mean(|Q|) - alpha mean(log pi(a|s))``; the normalizer is a constant, so the loss is
    invariant to the scale of Q (a sparse -1 / 0 reward over long horizons makes |Q| large). Shapes ``[B] -> []``.
    """
    return -q_pi.mean() / (q_pi.abs().mean().detach() + 1e-6) - alpha * bc_log_prob.mean()


# --------------------------------------------------------------------------- learner

BATCH_KEYS = ("observations", "actions", "rewards", "next_observations", "masks", "actor_observations")


class IqlLearner:
    """IQL on a fixed dataset. ``sample(rng) -> batch`` (``observations``, ``actions``, ``rewards``,
    ``next_observations``, ``masks``) is overridable (goal-conditioned IQL relabels there).
    """

    algo = "iql"

    def __init__(self, cfg, c: IqlConfig | None = None):
        self.exp = cfg
        self.cfg = c = c if c is not None else cfg.iql
        self.seed = cfg.seed
        torch.manual_seed(cfg.seed)
        self.dataset = load_training_dataset(cfg.dataset.path)
        self._setup_data()
        self.n_act = int(np.prod(self.dataset.action_space.shape))
        fit = self._normalizer_sample() if c.normalize_obs else None
        self.normalizer = make_normalizer(self.n_obs, c.normalize_obs, fit)
        self.actor = mlp(self.n_obs, self.n_act, c.hidden, c.activation)
        self.log_std = nn.Parameter(torch.zeros(self.n_act))
        ln = c.value_layer_norm
        self.critic = EnsembleMLP(2, self.n_obs + self.n_act, 1, c.hidden, c.activation, layer_norm=ln)
        self.critic_target = EnsembleMLP(2, self.n_obs + self.n_act, 1, c.hidden, c.activation, layer_norm=ln)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)
        self.value = mlp(self.n_obs, 1, c.hidden, c.activation, layer_norm=ln)
        self.actor_opt = torch.optim.Adam([*self.actor.parameters(), self.log_std], lr=c.lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=c.lr)
        self.value_opt = torch.optim.Adam(self.value.parameters(), lr=c.lr)
        self.env_steps = 0  # gradient steps (the runner's step counter)
        self.segment = 0
        self.rng = np.random.default_rng([self.seed, 0])
        self._stats = torch.zeros(5)
        self._stats_n = 0

    # ---- data (overridden by goal-conditioned IQL)

    def _setup_data(self) -> None:
        self.data = Transitions.from_episodes(self.dataset.episodes)
        self.n_obs = self.data.observations.shape[1]

    def _normalizer_sample(self) -> np.ndarray:
        return self.data.observations

    def sample(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        b = self.data.sample(self.cfg.batch_size, rng)
        b["masks"] = 1.0 - b.pop("terminals")
        return b

    # ---- runner interface

    def begin_segment(self, segment: int) -> None:
        """Batch sampling is reseeded from (seed, segment), so a resumed run samples what the original did."""
        self.segment = int(segment)
        self.rng = np.random.default_rng([self.seed, self.segment])

    def train_until(self, target_step: int) -> None:
        while self.env_steps < target_step:
            batch = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in self.sample(self.rng).items()
                     if k in BATCH_KEYS}
            self.update(batch)
            self.env_steps += 1

    def update(self, b: dict[str, torch.Tensor]) -> None:
        c = self.cfg
        obs, next_obs = self.normalizer(b["observations"]), self.normalizer(b["next_observations"])
        act = b["actions"]
        with torch.no_grad():
            q_t = self.critic_target(torch.cat([obs, act], -1)).min(0).values.squeeze(-1)
            next_v = self.value(next_obs).squeeze(-1)
            target = td_target(b["rewards"], b["masks"], next_v, c.gamma)
        # value: expectile of the target critic over dataset actions
        v = self.value(obs).squeeze(-1)
        value_loss = expectile_loss(q_t - v, c.expectile)
        self.value_opt.zero_grad(set_to_none=True)
        value_loss.backward()
        self.value_opt.step()
        # critics: regress onto r + gamma V(s')
        q = self.critic(torch.cat([obs, act], -1)).squeeze(-1)  # [2, B]
        critic_loss = (q - target).square().mean(1).sum()
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()
        # actor (goal-conditioned IQL may give the actor its own goals): AWR or DDPG+BC
        a_obs = self.normalizer(b["actor_observations"]) if "actor_observations" in b else obs
        mean = torch.tanh(self.actor(a_obs))
        if c.actor_loss == "ddpgbc":
            self.critic.requires_grad_(False)  # the actor's loss moves the actor only
            q_pi = self.critic(torch.cat([a_obs, mean], -1)).min(0).values.squeeze(-1)
            self.critic.requires_grad_(True)
            actor_loss = ddpgbc_actor_loss(q_pi, gaussian_log_prob(mean, torch.zeros_like(self.log_std), act),
                                           c.alpha)
            weights = q_pi.detach()  # logged as actor_q_mean
        else:
            adv = q_t - v.detach()
            if "actor_observations" in b:
                with torch.no_grad():
                    adv = (self.critic_target(torch.cat([a_obs, act], -1)).min(0).values.squeeze(-1)
                           - self.value(a_obs).squeeze(-1))
            weights = awr_weights(adv, c.beta, c.max_weight)
            actor_loss = awr_actor_loss(weights, gaussian_log_prob(mean, self.log_std, act))
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()
        with torch.no_grad():
            for p, pt in zip(self.critic.parameters(), self.critic_target.parameters()):
                pt.lerp_(p, c.polyak)
            self._stats += torch.stack([value_loss, critic_loss, actor_loss, v.mean(), weights.mean()]).detach()
        self._stats_n += 1

    def pop_stats(self) -> dict[str, float]:
        names = ("value_loss", "critic_loss", "actor_loss", "v_mean",
                 "actor_q_mean" if self.cfg.actor_loss == "ddpgbc" else "awr_weight_mean")
        vals = (self._stats / max(self._stats_n, 1)).tolist()
        out = {k: (v if self._stats_n else float("nan")) for k, v in zip(names, vals)}
        out["updates"] = float(self.env_steps)
        self._stats.zero_()
        self._stats_n = 0
        return out

    def policy_module(self) -> PolicyModule:
        return PolicyModule(self.normalizer, self.actor, self.n_act, "tanh")

    def policy_spec(self) -> dict:
        """What ``load_policy`` needs to rebuild ``policy_module()`` without this class."""
        return {"n_obs": self.n_obs, "n_act": self.n_act, "n_out": self.n_act, "hidden": list(self.cfg.hidden),
                "activation": self.cfg.activation, "squash": "tanh", "normalize_obs": self.cfg.normalize_obs,
                "state_dict": self.policy_module().state_dict()}

    def state_dict(self) -> dict:
        return {"actor": self.actor.state_dict(), "log_std": self.log_std.detach().clone(),
                "critic": self.critic.state_dict(), "critic_target": self.critic_target.state_dict(),
                "value": self.value.state_dict(), "normalizer": self.normalizer.state_dict(),
                "actor_opt": self.actor_opt.state_dict(), "critic_opt": self.critic_opt.state_dict(),
                "value_opt": self.value_opt.state_dict(), "env_steps": self.env_steps, "segment": self.segment,
                "stats": self._stats.clone(), "stats_n": self._stats_n}

    def load_state_dict(self, s: dict) -> None:
        for name in ("actor", "critic", "critic_target", "value", "normalizer", "actor_opt", "critic_opt",
                     "value_opt"):
            getattr(self, name).load_state_dict(s[name])
        with torch.no_grad():
            self.log_std.copy_(s["log_std"])
        self.env_steps, self.segment, self._stats_n = s["env_steps"], s["segment"], s["stats_n"]
        self._stats.copy_(s["stats"])

    def close(self) -> None:
        pass
