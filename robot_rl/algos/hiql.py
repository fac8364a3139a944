"""Hierarchical implicit Q-learning (HIQL; Park et al. 2023, "HIQL: Offline Goal-Conditioned RL with Latent States as
Actions"), offline, from a goal-conditioned episode dataset, as OGBench's HIQL agent (Park et al. 2024).

One action-free goal-conditioned value ``V(s, phi(s, g))`` (two heads sharing ``phi``, a length-normalized goal
representation) learned with OGBench's GCIVL loss on relabeled goals (``relabel``; sparse -1 / 0 rewards, the return
cut at success): the expectile weight comes from the target value's advantage, the regression from each head's own
TD error (``ivl_value_loss``). Two policies are extracted from it by advantage-weighted regression:

* high level ``pi_h(s, g)``: predicts ``phi(s, s_{t+k})``, the representation of the state ``k = subgoal_steps``
  later on the way to a future goal ``g`` of the same episode, weighted by
  ``exp(high_alpha (V(s_{t+k}, g) - V(s, g)))``;
* low level ``pi_l(s, z)``: the data's action for the subgoal ``w = s_{t+k}`` given ``z = phi(s, w)``, weighted by
  ``exp(low_alpha (V(s', w) - V(s, w)))``.

Long horizons are where it pays: the value's advantage between neighbouring states of a far goal is small and noisy,
while a subgoal ``k`` steps away is far enough for a clear signal and near enough for the low level. ``phi`` is
trained by the value loss only. Both policies are deterministic at deployment (the Gaussians' means, constant unit
std in training); ``policy_module()`` chains them into one ``HierarchicalPolicyModule`` with the input
``concat(observation, goal)`` of every goal-conditioned policy here, so export, nodes and evaluation need nothing new.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn

from robot_rl.algos.iql import DatasetConfig, awr_weights
from robot_rl.core.experiment import EnvConfig, TrainConfig
from robot_rl.data.dataset import load_training_dataset
from robot_rl.data.relabel import GoalEpisodes, RelabelConfig, future_index
from robot_rl.nets import EnsembleMLP, HierarchicalPolicyModule, length_normalize, make_normalizer, mlp


@dataclass(frozen=True)
class HiqlConfig:
    batch_size: int = 256
    """Transitions per gradient step."""
    hidden: tuple[int, ...] = (256, 256, 256)
    """Hidden widths of the value heads, the goal representation and both policies."""
    activation: str = "gelu"
    """Hidden activation (relu, tanh, elu, silu, gelu; OGBench: gelu)."""
    layer_norm: bool = True
    """Layer normalization in every hidden layer of the value heads and the goal representation, as OGBench's. On
    its pointmaze it decides: 100 % success at 50k steps with it, 73 % with relu and none (bench/bench_ogbench.py)."""
    lr: float = 3e-4
    """Adam learning rate of every network."""
    gamma: float = 0.99
    """Discount per control step."""
    expectile: float = 0.7
    """tau of the value's expectile loss (OGBench HIQL: 0.7)."""
    low_alpha: float = 3.0
    """Inverse temperature of the low-level policy's advantage weights."""
    high_alpha: float = 3.0
    """Inverse temperature of the high-level policy's advantage weights."""
    max_weight: float = 100.0
    """Clip of the advantage weights."""
    subgoal_steps: int = 25
    """k: the subgoal is the state k steps later (capped at the episode's end)."""
    rep_dim: int = 10
    """Size of the goal representation phi (length-normalized to sqrt(rep_dim))."""
    polyak: float = 0.005
    """Target value update rate."""
    normalize_obs: bool = True
    """Normalize observations and goals with the dataset's statistics (inside the exported policy)."""

    def __post_init__(self):
        if not 0.5 <= self.expectile < 1:
            raise ValueError(f"expectile must be in [0.5, 1), got {self.expectile}")
        if not 0 < self.gamma < 1 or not 0 < self.polyak <= 1:
            raise ValueError(f"gamma must be in (0, 1) and polyak in (0, 1], got {self.gamma}, {self.polyak}")
        if self.batch_size < 1 or self.lr <= 0 or self.max_weight <= 0:
            raise ValueError("batch_size, lr and max_weight must be positive")
        if self.low_alpha < 0 or self.high_alpha < 0:
            raise ValueError(f"low_alpha and high_alpha must be >= 0, got {self.low_alpha}, {self.high_alpha}")
        if self.subgoal_steps < 1 or self.rep_dim < 1:
            raise ValueError(f"subgoal_steps and rep_dim must be >= 1, got {self.subgoal_steps}, {self.rep_dim}")


@dataclass(frozen=True)
class HiqlExperiment:
    algo: Literal["hiql"]
    """Algorithm selector."""
    env: EnvConfig
    """Goal-conditioned environment for evaluation (Dict observations)."""
    dataset: DatasetConfig
    """The offline data (Dict observations with achieved_goal / desired_goal)."""
    seed: int = 0
    """Seed of network initialization and batch sampling (0 <= seed < 1000)."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Loop: ``total_steps`` counts gradient steps here."""
    hiql: HiqlConfig = field(default_factory=HiqlConfig)
    """HIQL hyperparameters (OGBench's HIQL defaults, at 256-wide nets)."""
    relabel: RelabelConfig = field(default_factory=lambda: RelabelConfig(
        p_future=0.0, p_geometric=0.5, p_random=0.3, p_original=0.2))
    """Goal mixture of the value batches. The high-level policy's goals are uniform future states of the same
    episode; the low level's are the subgoals."""

    def __post_init__(self):
        if not 0 <= self.seed < 1000:
            raise ValueError(f"seed must be in [0, 1000), got {self.seed}")

    def make_learner(self):
        """``HiqlLearner(self)``, as the runner builds it from ``robot_rl.algos.registry``."""
        return HiqlLearner(self)


# --------------------------------------------------------------------------- losses (pure functions)


def ivl_value_loss(q_heads: torch.Tensor, v_heads: torch.Tensor, adv: torch.Tensor, tau: float) -> torch.Tensor:
    """GCIVL's value loss: ``sum_i mean(|tau - 1(adv < 0)| (q_i - v_i)^2)``.

    ``q_heads`` ``[E, B]``: each head's TD target ``r + gamma mask V_target_i(s', g)``; ``v_heads`` ``[E, B]``: the
    heads' values; ``adv`` ``[B]``: ``r + gamma mask min_i V_target_i(s', g) - mean_i V_target_i(s, g)``, which picks
    the expectile side for all heads alike (the double-DQN-like split of OGBench's GCIVL). Returns ``[]``.
    """
    weight = torch.where(adv < 0, 1.0 - tau, tau)
    return (weight * (q_heads - v_heads).square()).mean(1).sum()


def subgoal_rows(t: np.ndarray, last: np.ndarray, goal: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(low, high_target)``: the row k steps after ``t`` capped at the episode's last row, and the high level's
    prediction target, k steps after ``t`` capped at its goal row ``goal`` (``t < goal <= last``).
    """
    return np.minimum(t + k, last), np.minimum(t + k, goal)


# --------------------------------------------------------------------------- networks


class GoalValue(nn.Module):
    """``V_i(s, phi(s, g))``, E heads sharing the goal representation ``phi``. Inputs are normalized."""

    def __init__(self, n_state: int, n_goal: int, c: HiqlConfig, n_heads: int = 2):
        super().__init__()
        self.n_state = n_state
        self.phi = mlp(n_state + n_goal, c.rep_dim, c.hidden, c.activation, layer_norm=c.layer_norm)
        self.heads = EnsembleMLP(n_heads, n_state + c.rep_dim, 1, c.hidden, c.activation, layer_norm=c.layer_norm)

    def rep(self, pair: torch.Tensor) -> torch.Tensor:
        """``phi(concat(s, g))`` ``[B, rep_dim]`` on the sphere of radius ``sqrt(rep_dim)``."""
        return length_normalize(self.phi(pair))

    def forward(self, pair: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``concat(s, g)`` ``[B, n_state + n_goal]`` -> (values ``[E, B]``, representations ``[B, rep_dim]``)."""
        z = self.rep(pair)
        return self.heads(torch.cat([pair[:, : self.n_state], z], -1)).squeeze(-1), z


# --------------------------------------------------------------------------- learner

# Batch keys: each ``*_pairs`` entry is ``concat(state, goal)`` [B, n_state + n_goal].
PAIRS = ("pairs", "next_pairs", "low_pairs", "next_low_pairs", "high_pairs", "target_high_pairs", "target_pairs")


class HiqlLearner:
    """HIQL with the learner interface of ``robot_rl.train.runner`` (``env_steps`` = gradient steps)."""

    algo = "hiql"

    def __init__(self, cfg: HiqlExperiment):
        self.exp, self.cfg, self.seed = cfg, cfg.hiql, cfg.seed
        c = self.cfg
        torch.manual_seed(cfg.seed)
        self.dataset = load_training_dataset(cfg.dataset.path)
        self.goals = g = GoalEpisodes(self.dataset.episodes)
        self.n_state, self.n_goal, self.n_act = g.obs.shape[1], g.achieved.shape[1], g.actions.shape[1]
        self.n_obs = self.n_state + self.n_goal
        fit = g.normalizer_sample(self.seed) if c.normalize_obs else None
        self.normalizer = make_normalizer(self.n_obs, c.normalize_obs, fit)
        self.value = GoalValue(self.n_state, self.n_goal, c)
        self.value_target = GoalValue(self.n_state, self.n_goal, c)
        self.value_target.load_state_dict(self.value.state_dict())
        self.value_target.requires_grad_(False)
        self.high = mlp(self.n_obs, c.rep_dim, c.hidden, c.activation)
        self.low = mlp(self.n_state + c.rep_dim, self.n_act, c.hidden, c.activation)
        # The three losses move disjoint parameters (phi only through the value), so one Adam is three Adams.
        self.opt = torch.optim.Adam([*self.value.parameters(), *self.high.parameters(), *self.low.parameters()],
                                    lr=c.lr)
        self.env_steps, self.segment = 0, 0
        self.rng = np.random.default_rng([self.seed, 0])
        self._stats = torch.zeros(5)
        self._stats_n = 0

    # ---- data

    def sample(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """A batch: value pairs with relabeled goals (rewards, masks), subgoal pairs of both policies, actions."""
        g, c, rc = self.goals, self.cfg, self.exp.relabel
        n = c.batch_size
        trans = rng.integers(0, len(g), size=n)
        p = rc.probabilities()
        source = rng.choice(len(p), size=n, p=p / p.sum())
        vb = g.assemble(trans, g.goal_rows(trans, source, rng.random(n), rng.random(n), rc.gamma), rc)
        t, last = g.trans_row[trans], g.last_row[trans]
        high_goal = future_index(t, last, rng.random(n))
        low, target = subgoal_rows(t, last, high_goal, c.subgoal_steps)
        s, s1, w, gh = g.obs[t], g.obs[t + 1], g.achieved[low], g.achieved[high_goal]

        def cat(a, b):
            return np.concatenate([a, b], axis=1)

        return {"pairs": vb["observations"], "next_pairs": vb["next_observations"], "rewards": vb["rewards"],
                "masks": vb["masks"], "actions": vb["actions"], "low_pairs": cat(s, w), "next_low_pairs": cat(s1, w),
                "high_pairs": cat(s, gh), "target_high_pairs": cat(g.obs[target], gh),
                "target_pairs": cat(s, g.achieved[target])}

    # ---- runner interface

    def begin_segment(self, segment: int) -> None:
        """Batch sampling is reseeded from (seed, segment), so a resumed run samples what the original did."""
        self.segment = int(segment)
        self.rng = np.random.default_rng([self.seed, self.segment])

    def train_until(self, target_step: int) -> None:
        while self.env_steps < target_step:
            self.update({k: torch.as_tensor(v, dtype=torch.float32) for k, v in self.sample(self.rng).items()})
            self.env_steps += 1

    def update(self, b: dict[str, torch.Tensor]) -> None:
        c, n = self.cfg, len(b["actions"])
        z = self.normalizer(torch.cat([b[k] for k in PAIRS]))
        pairs, next_pairs, low, next_low, high, target_high, target = z.split(n)
        with torch.no_grad():
            v_t, _ = self.value_target(torch.cat([next_pairs, pairs]))  # [2, 2B]
            next_v_t, cur_v_t = v_t[:, :n], v_t[:, n:]
            r, m = b["rewards"], b["masks"]
            q_heads = r + c.gamma * m * next_v_t
            adv = r + c.gamma * m * next_v_t.min(0).values - cur_v_t.mean(0)
            # Both policies' advantages under the current value, and the representations they use, in one pass.
            reps = self.value.rep(torch.cat([low, next_low, high, target_high, target]))
            states = torch.cat([low, next_low, high, target_high])[:, : self.n_state]
            v_a = self.value.heads(torch.cat([states, reps[:4 * n]], -1)).squeeze(-1).mean(0)
            low_adv = v_a[n:2 * n] - v_a[:n]
            high_adv = v_a[3 * n:4 * n] - v_a[2 * n:3 * n]
            low_rep, target_rep = reps[:n], reps[4 * n:]
        v_heads, _ = self.value(pairs)
        value_loss = ivl_value_loss(q_heads, v_heads, adv, c.expectile)
        # Constant unit std: the log-likelihood is -|x - mean|^2 / 2 up to a constant.
        low_mean = torch.tanh(self.low(torch.cat([pairs[:, : self.n_state], low_rep], -1)))
        low_loss = (awr_weights(low_adv, c.low_alpha, c.max_weight)
                    * 0.5 * (low_mean - b["actions"]).square().sum(-1)).mean()
        high_loss = (awr_weights(high_adv, c.high_alpha, c.max_weight)
                     * 0.5 * (self.high(high) - target_rep).square().sum(-1)).mean()
        self.opt.zero_grad(set_to_none=True)
        (value_loss + low_loss + high_loss).backward()
        self.opt.step()
        with torch.no_grad():
            for p, pt in zip(self.value.parameters(), self.value_target.parameters()):
                pt.lerp_(p, c.polyak)
            self._stats += torch.stack([value_loss, low_loss, high_loss, v_heads.mean(), high_adv.mean()]).detach()
        self._stats_n += 1

    def pop_stats(self) -> dict[str, float]:
        names = ("value_loss", "low_actor_loss", "high_actor_loss", "v_mean", "high_adv_mean")
        vals = (self._stats / max(self._stats_n, 1)).tolist()
        out = {k: (v if self._stats_n else float("nan")) for k, v in zip(names, vals)}
        out["updates"] = float(self.env_steps)
        self._stats.zero_()
        self._stats_n = 0
        return out

    def policy_module(self) -> HierarchicalPolicyModule:
        return HierarchicalPolicyModule(self.normalizer, self.high, self.low, self.n_state, self.n_act)

    def policy_spec(self) -> dict:
        """What ``load_policy`` needs to rebuild ``policy_module()`` without this class."""
        c = self.cfg
        return {"kind": "hierarchical", "n_obs": self.n_obs, "n_state": self.n_state, "n_act": self.n_act,
                "rep_dim": c.rep_dim, "hidden": list(c.hidden), "activation": c.activation,
                "normalize_obs": c.normalize_obs, "state_dict": self.policy_module().state_dict()}

    def state_dict(self) -> dict:
        return {"value": self.value.state_dict(), "value_target": self.value_target.state_dict(),
                "high": self.high.state_dict(), "low": self.low.state_dict(),
                "normalizer": self.normalizer.state_dict(), "opt": self.opt.state_dict(),
                "env_steps": self.env_steps, "segment": self.segment, "stats": self._stats.clone(),
                "stats_n": self._stats_n}

    def load_state_dict(self, s: dict) -> None:
        for name in ("value", "value_target", "high", "low", "normalizer", "opt"):
            getattr(self, name).load_state_dict(s[name])
        self.env_steps, self.segment, self._stats_n = s["env_steps"], s["segment"], s["stats_n"]
        self._stats.copy_(s["stats"])

    def close(self) -> None:
        pass
