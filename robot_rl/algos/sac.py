"""Soft Actor-Critic (Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and Applications", arXiv:1812.05905).

Twin Q critics evaluated as one batched ensemble forward pass (``EnsembleMLP`` with 2 members) with Polyak-averaged
targets, a tanh-squashed Gaussian actor, automatic entropy temperature, configurable update-to-data ratio, and
optional running observation normalization (``normalize_obs``, off by default: raw observations are stored in
replay and normalized when sampled).

Hot-loop choices (see docs/training.md, "Speed"): critic, actor and temperature losses are summed and
differentiated by one autograd backward pass (their gradients are independent), accumulated in place into one flat
gradient vector, and one ``torch.optim.Adam(fused=True)`` step updates all three; denormal floats are flushed
during the update, replay sampling gathers into preallocated tensors, Polyak averaging is one ``lerp_``, loss
statistics are summed on-tensor (no ``.item()`` per update) and the exploration actor runs in numpy on views of
the live weights.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn

from robot_rl.core.experiment import TRAIN_SEED_LIMIT, EnvConfig, TrainConfig
from robot_rl.data.replay import Batch, GoalReplayBuffer, ReplayBuffer
from robot_rl.nets import (
    EnsembleMLP,
    PolicyModule,
    RunningNormalizer,
    flat_adam,
    load_adam_state,
    make_normalizer,
    mlp,
    pack_parameters,
)
from robot_rl.nets.distributions import LOG_STD_MAX, LOG_STD_MIN, squash_log_std, tanh_gaussian_sample
from robot_rl.scale.config import RayConfig, RolloutConfig
from robot_rl.scale.envs import FlattenGoalObservation, episode_success, make_env
from robot_rl.scale.offpolicy_rollout import offpolicy_train_until
from robot_rl.scale.source import make_rollout_source

# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class SacConfig:
    gamma: float = 0.99
    """Discount factor per env step."""
    tau: float = 0.005
    """Polyak rate of the target critics: ``target <- (1 - tau) target + tau online`` every update."""
    actor_lr: float = 3e-4
    """Adam learning rate of the actor (and of the temperature)."""
    critic_lr: float = 3e-4
    """Adam learning rate of the twin critics."""
    batch_size: int = 256
    """Transitions per gradient update."""
    buffer_size: int = 1_000_000
    """Replay capacity in transitions (FIFO)."""
    learning_starts: int = 5_000
    """Env steps of uniformly random actions before the first update."""
    utd_ratio: float = 1.0
    """Update-to-data ratio: gradient updates per env step (0.5 = one update every 2 steps, 2 = two per step)."""
    actor_hidden: tuple[int, ...] = (256, 256)
    """Actor MLP hidden widths."""
    critic_hidden: tuple[int, ...] = (256, 256)
    """Critic MLP hidden widths (each of the twin critics)."""
    activation: Literal["relu", "tanh", "elu", "silu", "gelu"] = "relu"
    """Hidden activation of actor and critics."""
    init_alpha: float = 1.0
    """Initial entropy temperature."""
    autotune_alpha: bool = True
    """Learn the temperature to hold the policy entropy at ``target_entropy`` (SAC v2)."""
    target_entropy: float | None = None
    """Target policy entropy [nats]; null = ``-n_act`` (the SAC paper's heuristic)."""
    normalize_obs: bool = False
    """Running mean/std observation normalization (also inside the exported policy). Off by default, as in the SAC
    references (softlearning, SB3): statistics that keep moving under a replay buffer and lagging target critics
    cost 45 % of the return on dm_control cartpole-swingup (327 vs 590, mean of 9 seeds at 30k steps)."""
    reward_scale: float = 1.0
    """Multiplier applied to rewards before learning (logged returns are unscaled)."""
    her_ratio: float = 0.0
    """Hindsight relabeling (HER, "future" strategy) for goal-conditioned tasks: the fraction of every batch whose
    goal is replaced by one achieved later in the same episode, reward recomputed by the task (0.8 = HER's k=4;
    0 = off). Needs a dict-observation goal task and the local rollout backend."""

    def __post_init__(self):
        if not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"sac.gamma must be in (0, 1], got {self.gamma}")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"sac.tau must be in (0, 1], got {self.tau}")
        if self.utd_ratio <= 0:
            raise ValueError(f"sac.utd_ratio must be > 0, got {self.utd_ratio}")
        if self.init_alpha <= 0:
            raise ValueError(f"sac.init_alpha must be > 0, got {self.init_alpha}")
        for name in ("batch_size", "buffer_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"sac.{name} must be >= 1, got {getattr(self, name)}")
        if self.learning_starts < 0:
            raise ValueError(f"sac.learning_starts must be >= 0, got {self.learning_starts}")
        if not 0.0 <= self.her_ratio <= 1.0:
            raise ValueError(f"sac.her_ratio must be in [0, 1], got {self.her_ratio}")


@dataclass(frozen=True)
class SacExperiment:
    algo: Literal["sac"]
    """Algorithm selector."""
    env: EnvConfig
    """Environment and randomization."""
    seed: int = 0
    """Seed of networks, exploration, replay sampling and training env episodes (0 <= seed < 1000)."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Training loop: budget, logging, evaluation, checkpoints."""
    sac: SacConfig = field(default_factory=SacConfig)
    """SAC hyperparameters."""
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    """Where transitions come from: ``backend: local`` (this process's env, default) or ``ray`` (rollout-worker
    actors, ``rollout.workers``); see docs/scale.md."""
    ray: RayConfig = field(default_factory=RayConfig)
    """Ray cluster for ``rollout.backend: ray`` (``ray.address``; null = private local cluster on 127.0.0.1)."""

    def __post_init__(self):
        if not 0 <= self.seed < 1000:
            raise ValueError(f"seed must be in [0, 1000), got {self.seed}")


# --------------------------------------------------------------------------- losses (pure functions)


def soft_q_target(rew: torch.Tensor, done: torch.Tensor, next_q: torch.Tensor, next_log_prob: torch.Tensor,
                  alpha: torch.Tensor | float, gamma: float) -> torch.Tensor:
    """Soft Bellman target ``y = r + gamma (1 - d) (min_e Q_e(s', a') - alpha log pi(a'|s'))``, a' ~ pi(s').

    Shapes: ``rew``, ``done``, ``next_log_prob`` ``[B]``; ``next_q`` ``[E, B]`` (target critics) -> ``[B]``.
    """
    soft_value = next_q.min(dim=0).values - alpha * next_log_prob
    return rew + gamma * (1.0 - done) * soft_value


def critic_loss(q: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Sum over critics of the mean squared TD error. ``q`` ``[E, B]``, ``target`` ``[B]`` -> scalar."""
    return (q - target).square().mean(dim=1).sum()


def actor_loss(log_prob: torch.Tensor, q: torch.Tensor, alpha: torch.Tensor | float) -> torch.Tensor:
    """``E[alpha log pi(a|s) - min_e Q_e(s, a)]`` with ``a`` reparameterized. ``log_prob`` ``[B]``, ``q`` ``[E, B]``."""
    return (alpha * log_prob - q.min(dim=0).values).mean()


def temperature_loss(log_alpha: torch.Tensor, log_prob: torch.Tensor, target_entropy: float) -> torch.Tensor:
    """``-log_alpha * E[log pi + H_target]`` (SAC v2 eq. 18, in log space): alpha rises when entropy < target."""
    return -(log_alpha * (log_prob.detach() + target_entropy)).mean()


# --------------------------------------------------------------------------- learner


def train_episode_seed(seed: int, segment: int) -> int:
    """Env reset seed of training segment ``segment`` (always < TRAIN_SEED_LIMIT, disjoint from eval seeds)."""
    return (seed * 1_000_003 + segment * 7_919) % TRAIN_SEED_LIMIT


class SacLearner:
    """One env, SAC updates interleaved with env steps. See ``robot_rl.train.runner`` for the driving loop."""

    algo = "sac"

    def __init__(self, cfg: SacExperiment):
        self.cfg = c = cfg.sac
        self.seed = cfg.seed
        torch.manual_seed(cfg.seed)
        self.env = make_env(cfg.env.id, randomization=cfg.env.randomization, seed=cfg.seed)
        self.source = None
        self.batch_steps = cfg.rollout.batch_steps
        if cfg.rollout.backend == "ray":  # one env per Ray rollout worker; stale batches kept (off-policy)
            self.source = make_rollout_source(cfg, cfg.rollout.workers, default_staleness=None)
        self.n_obs = int(np.prod(self.env.observation_space.shape))
        self.n_act = int(np.prod(self.env.action_space.shape))
        self.target_entropy = float(-self.n_act if c.target_entropy is None else c.target_entropy)

        self.normalizer = make_normalizer(self.n_obs, c.normalize_obs)
        self.actor = mlp(self.n_obs, 2 * self.n_act, c.actor_hidden, c.activation)  # [mean, raw log-std]
        self.critic = EnsembleMLP(2, self.n_obs + self.n_act, 1, c.critic_hidden, c.activation)
        self.critic_target = EnsembleMLP(2, self.n_obs + self.n_act, 1, c.critic_hidden, c.activation)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.tensor(math.log(c.init_alpha)))
        # Critic, actor and temperature live in one flat parameter vector with one flat gradient; one Adam step
        # (one parameter group per learning rate) updates all three, see ``update``. The target critic is flat too.
        critic_params, actor_params = list(self.critic.parameters()), list(self.actor.parameters())
        self.flat, self.flat_grad = pack_parameters([*critic_params, *actor_params, self.log_alpha])
        self.target_flat, _ = pack_parameters(list(self.critic_target.parameters()), with_grad=False)
        self.n_critic = sum(p.numel() for p in critic_params)
        n_trained = self.flat.numel() if c.autotune_alpha else self.flat.numel() - 1  # log_alpha is last
        self.opt = flat_adam(self.flat, self.flat_grad, [(0, self.n_critic, c.critic_lr),
                                                         (self.n_critic, n_trained, c.actor_lr)])
        self.her = c.her_ratio > 0
        if self.her:
            self.replay = self._goal_replay(cfg)
        else:
            self.replay = ReplayBuffer(c.buffer_size, self.n_obs, self.n_act, c.batch_size, seed=cfg.seed + 1)
        # numpy views of the live actor / normalizer tensors (updated in place) for the env-stepping path
        self._np_actor = [(m.weight.detach().numpy(), m.bias.detach().numpy()) for m in self.actor
                          if isinstance(m, nn.Linear)] if c.activation in ("relu", "tanh") else None
        self._np_norm = (self.normalizer.mean_f32.numpy(), self.normalizer.inv_std_f32.numpy(),
                         self.normalizer.clip) if isinstance(self.normalizer, RunningNormalizer) else None

        self.env_steps = 0
        self.n_updates = 0
        self.updates_due = 0.0
        self.segment = 0
        self.pending_obs: list[np.ndarray] = []
        self._stats = torch.zeros(5)  # critic_loss, actor_loss, alpha, entropy, q_mean (sums)
        self._stats_n = 0
        self.finished_episodes: list[tuple[float, int, float]] = []
        self._obs: np.ndarray | None = None

    def _goal_replay(self, cfg: SacExperiment) -> GoalReplayBuffer:
        """The HER replay of a goal task (``sac.her_ratio`` > 0); a clear error for any other setup."""
        c = cfg.sac
        if cfg.rollout.backend != "local":
            raise ValueError(f"sac.her_ratio {c.her_ratio} needs rollout.backend: local (got "
                             f"{cfg.rollout.backend!r}): relabeling reads the achieved goals of this process's env")
        if not isinstance(self.env, FlattenGoalObservation):
            raise ValueError(f"sac.her_ratio {c.her_ratio}: env {cfg.env.id!r} is not goal-conditioned (no dict "
                             f"observation with achieved_goal / desired_goal); set her_ratio: 0")
        base = self.env.unwrapped
        goal_dim = int(self.env.env.observation_space["desired_goal"].shape[0])

        def reward_fn(achieved, desired):
            return base.compute_reward(achieved, desired, {})

        return GoalReplayBuffer(c.buffer_size, self.n_obs, self.n_act, c.batch_size, seed=cfg.seed + 1,
                                goal_dim=goal_dim, reward_fn=reward_fn, her_ratio=c.her_ratio,
                                reward_scale=c.reward_scale)

    # ---- environment segments (checkpoints happen at segment boundaries; see docs/training.md "Resume")

    def begin_segment(self, segment: int) -> None:
        """Reset the env with a seed derived from (seed, segment); a partial episode is dropped (as a truncation)."""
        self.segment = int(segment)
        if self.her:
            self.replay.close_episode()
        obs, _ = self.env.reset(seed=train_episode_seed(self.seed, self.segment))
        if self.source is not None:
            self.source.reset(seed=train_episode_seed(self.seed, self.segment))
        self._obs = np.asarray(obs, dtype=np.float32)
        self._ep_return, self._ep_len = 0.0, 0

    def _act(self, obs: np.ndarray) -> np.ndarray:
        """Exploration action ``tanh(mean + std * eps)`` for one raw observation ``[n_obs]`` -> ``[n_act]``.

        ReLU/tanh actors run in numpy on views of the live parameters (no torch dispatch per env step); the
        noise still comes from torch's global generator.
        """
        eps = torch.randn(self.n_act).numpy()
        if self._np_actor is None:
            with torch.no_grad():
                out = self.actor(self.normalizer(torch.from_numpy(obs).unsqueeze(0)))[0].numpy()
        else:
            x = obs
            if self._np_norm is not None:
                mean, inv_std, clip = self._np_norm
                x = np.clip((x - mean) * inv_std, -clip, clip)
            last = len(self._np_actor) - 1
            for i, (w, b) in enumerate(self._np_actor):
                x = w @ x + b
                if i < last:
                    x = np.maximum(x, 0.0, out=x) if self.cfg.activation == "relu" else np.tanh(x, out=x)
            out = x
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (np.tanh(out[self.n_act:]) + 1.0)
        return np.tanh(out[: self.n_act] + np.exp(log_std) * eps)

    def train_until(self, target_step: int) -> None:
        """Step the env (and update) until ``env_steps == target_step``."""
        if self.source is not None:
            offpolicy_train_until(self, self.source, target_step, self.batch_steps)
            return
        c = self.cfg
        env = self.env
        while self.env_steps < target_step:
            obs = self._obs
            if self.env_steps < c.learning_starts:
                action = (torch.rand(self.n_act) * 2.0 - 1.0).numpy()
            else:
                action = self._act(obs)
            next_obs, rew, terminated, truncated, info = env.step(action)
            next_obs = np.asarray(next_obs, dtype=np.float32)
            if self.her:
                self.replay.add(obs, action, float(rew) * c.reward_scale, next_obs, bool(terminated),
                                env.achieved_goal, terminated or truncated)
            else:
                self.replay.add(obs, action, float(rew) * c.reward_scale, next_obs, bool(terminated))
            self.pending_obs.append(obs)
            self._ep_return += float(rew)
            self._ep_len += 1
            self.env_steps += 1
            if terminated or truncated:
                self.finished_episodes.append((self._ep_return, self._ep_len, episode_success(info)))
                obs2, _ = env.reset()
                self._obs = np.asarray(obs2, dtype=np.float32)
                self._ep_return, self._ep_len = 0.0, 0
            else:
                self._obs = next_obs
            if self.env_steps >= c.learning_starts:
                self.updates_due += c.utd_ratio
                while self.updates_due >= 1.0:
                    self.updates_due -= 1.0
                    self.update()

    def _fold_normalizer(self) -> None:
        if self.pending_obs and isinstance(self.normalizer, RunningNormalizer):
            self.normalizer.update(torch.from_numpy(np.stack(self.pending_obs)))
        self.pending_obs.clear()

    def update(self) -> None:
        """One SAC gradient update (critics, actor, temperature in one step), then Polyak-averaged targets."""
        if len(self.pending_obs) >= 16 or self.n_updates == 0:
            self._fold_normalizer()
        b = self.replay.sample()
        noise = torch.randn(2 * b.obs.shape[0], self.n_act)  # rows :B policy action at obs, B: target action
        # Denormal floats (|x| < 1.2e-38, e.g. Adam moments of a weight whose gradient has been 0 for a while) cost
        # ~30x a normal float on x86; they are flushed to zero during the update only (the env is not affected).
        torch.set_flush_denormal(True)
        try:
            stats = self.compute_grads(b, noise)
            self.opt.step()
            with torch.no_grad():
                self.target_flat.lerp_(self.flat[: self.n_critic], self.cfg.tau)
                self._stats += stats
        finally:
            torch.set_flush_denormal(False)
        self._stats_n += 1
        self.n_updates += 1

    def compute_grads(self, b: Batch, noise: torch.Tensor) -> torch.Tensor:
        """Gradients of the summed SAC losses on batch ``b`` (raw observations) into ``self.flat_grad`` (autograd).

        ``noise`` ``[2B, n_act]``: standard normal draws of the reparameterized actions (rows ``:B`` at ``obs``,
        rows ``B:`` at ``next_obs``). Returns the statistics ``[critic_loss, actor_loss, alpha, entropy, mean Q]``.
        """
        loss, stats = self.losses(b.obs, b.next_obs, b.act, b.rew, b.done, noise)
        self.flat_grad.zero_()  # not opt.zero_grad(): that would detach the .grad views from the flat gradient
        loss.backward()
        return stats

    def losses(self, obs: torch.Tensor, next_obs: torch.Tensor, act: torch.Tensor, rew: torch.Tensor,
               done: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The summed SAC loss of one batch (raw observations) and its statistics (see ``compute_grads``)."""
        c = self.cfg
        B = obs.shape[0]
        obs2 = self.normalizer(torch.cat([obs, next_obs]))
        obs, next_obs = obs2[:B], obs2[B:]
        with torch.no_grad():
            alpha = self.log_alpha.exp()
            out = self.actor(next_obs)
            next_a, next_logp = tanh_gaussian_sample(out[:, : self.n_act], squash_log_std(out[:, self.n_act:]),
                                                     noise[B:])
            next_q = self.critic_target(torch.cat([next_obs, next_a], dim=1)).squeeze(-1)
            y = soft_q_target(rew, done, next_q, next_logp, alpha, c.gamma)

        # Critic, actor and temperature losses from the same parameters, summed, one backward (the simultaneous
        # update of the original implementation, Haarnoja et al.'s softlearning). The gradients do not mix: the
        # actor loss sees the critic through detached weights (``forward_frozen``) and alpha as a constant, the
        # temperature loss sees log pi as a constant, the critic loss does not involve the actor.
        q = self.critic(torch.cat([obs, act], dim=1)).squeeze(-1)
        out = self.actor(obs)
        a, logp = tanh_gaussian_sample(out[:, : self.n_act], squash_log_std(out[:, self.n_act:]), noise[:B])
        q_pi = self.critic.forward_frozen(torch.cat([obs, a], dim=1)).squeeze(-1)
        loss_q = critic_loss(q, y)
        loss_pi = actor_loss(logp, q_pi, alpha)
        loss = loss_q + loss_pi
        if c.autotune_alpha:
            loss = loss + temperature_loss(self.log_alpha, logp, self.target_entropy)
        return loss, torch.stack([loss_q, loss_pi, alpha, -logp.mean(), q.mean()]).detach()

    # ---- logging, policy, state

    def pop_stats(self) -> dict[str, float]:
        """Means since the last call: losses, temperature, entropy, Q, and completed training episodes."""
        out: dict[str, float] = {"updates": float(self.n_updates)}
        names = ("critic_loss", "actor_loss", "alpha", "entropy", "q_mean")
        vals = (self._stats / max(self._stats_n, 1)).tolist()
        for k, v in zip(names, vals):
            out[k] = v if self._stats_n else float("nan")
        eps = self.finished_episodes
        out["episodes"] = float(len(eps))
        out["train_return"] = float(np.mean([e[0] for e in eps])) if eps else float("nan")
        out["train_length"] = float(np.mean([e[1] for e in eps])) if eps else float("nan")
        if self.source is not None:
            out.update(self.source.pop_stats())
        self._stats.zero_()
        self._stats_n = 0
        self.finished_episodes = []
        return out

    def policy_module(self) -> PolicyModule:
        return PolicyModule(self.normalizer, self.actor, self.n_act, "tanh")

    def policy_spec(self) -> dict:
        """What ``load_policy`` needs to rebuild ``policy_module()`` without this class."""
        return {"n_obs": self.n_obs, "n_act": self.n_act, "n_out": 2 * self.n_act,
                "hidden": list(self.cfg.actor_hidden), "activation": self.cfg.activation, "squash": "tanh",
                "normalize_obs": self.cfg.normalize_obs,
                "state_dict": {k: v.clone() for k, v in self.policy_module().state_dict().items()}}

    WEIGHT_KEYS = ("flat", "target_flat", "normalizer", "opt", "replay")
    """The ``state_dict`` entries a fine-tuning run starts from (``train.init_from``). The replay buffer too: with
    an empty one the critic refits on the first few thousand new transitions and the actor collapses (the shipped
    swing-up policy fine-tuned on another profile: eval return 400 -> 0 within 5k steps; with its replay kept, no
    collapse)."""

    def state_dict(self) -> dict:
        return {"flat": self.flat.clone(), "target_flat": self.target_flat.clone(),
                "normalizer": self.normalizer.state_dict(), "opt": copy.deepcopy(self.opt.state_dict()),
                "replay": self.replay.state_dict(),
                "pending_obs": torch.from_numpy(np.stack(self.pending_obs)) if self.pending_obs else None,
                "env_steps": self.env_steps, "n_updates": self.n_updates, "updates_due": self.updates_due,
                "segment": self.segment, "stats": self._stats.clone(), "stats_n": self._stats_n,
                "episodes": [list(e) for e in self.finished_episodes]}

    def load_state_dict(self, s: dict) -> None:
        if s["flat"].shape != self.flat.shape:
            raise ValueError(f"checkpoint has {s['flat'].numel()} SAC parameters, "
                             f"the config builds {self.flat.numel()}")
        with torch.no_grad():
            self.flat.copy_(s["flat"])
            self.target_flat.copy_(s["target_flat"])
        self.normalizer.load_state_dict(s["normalizer"])
        load_adam_state(self.opt, s["opt"], self.flat)
        self.replay.load_state_dict(s["replay"])
        pending = s["pending_obs"]
        self.pending_obs = [] if pending is None else list(pending.numpy())
        self.env_steps, self.n_updates, self.updates_due = s["env_steps"], s["n_updates"], s["updates_due"]
        self.segment = s["segment"]
        self._stats.copy_(s["stats"])
        self._stats_n = s["stats_n"]
        self.finished_episodes = [tuple(e) for e in s["episodes"]]

    def close(self) -> None:
        self.env.close()
        if self.source is not None:
            self.source.close()

