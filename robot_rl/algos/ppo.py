"""Proximal Policy Optimization (Schulman et al. 2017, arXiv:1707.06347) with vectorized rollouts.

GAE (``robot_rl.data.rollout.gae``), clipped surrogate, optionally clipped value loss, advantage and running
observation normalization, entropy bonus, approximate-KL early stopping and a constant or linear learning-rate
schedule. The policy is a diagonal Gaussian with a state-independent log-std; sampled actions are clipped to
[-1, 1] by the env interface, the deterministic action is ``clip(mean, -1, 1)``. Time-limit truncations bootstrap:
``r += gamma V(final_obs)`` (Pardo et al. 2018, "Time Limits in Reinforcement Learning").

Speed (bench/results/sb3.md): parameters and gradients as views of one flat vector each, so autograd accumulates
into one gradient and the global-norm clip and ``torch.optim.Adam(fused=True)`` are one pass each; rollouts in
numpy (joint actor+critic pass per env step on a copy of the live weights, observation statistics folded in numpy,
numpy GAE). The losses and the numpy kernels are in ``robot_rl.algos.ppo_math``.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn

from robot_rl.algos.ppo_math import (
    _np_layers,
    _np_mlp,
    approx_kl,
    clip_grad_norm_flat_,
    gae_numpy,
    ppo_clip_loss,
    value_loss,
)
from robot_rl.core.experiment import TRAIN_SEED_LIMIT, EnvConfig, TrainConfig
from robot_rl.data.rollout import RolloutStorage
from robot_rl.nets import (
    PolicyModule,
    RunningNormalizer,
    flat_adam,
    gaussian_log_prob,
    load_adam_state,
    make_normalizer,
    mlp,
    pack_parameters,
)
from robot_rl.scale.config import RayConfig, RolloutConfig
from robot_rl.scale.envs import final_obs_rows, flatten_goal_obs, make_vec_env
from robot_rl.scale.ppo_rollout import collect_ppo_rollout
from robot_rl.scale.source import make_rollout_source

# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class PpoConfig:
    num_envs: int = 8
    """Parallel environments (``make_vec``)."""
    n_steps: int = 256
    """Rollout length per env per iteration; one iteration = ``num_envs * n_steps`` env steps."""
    gamma: float = 0.99
    """Discount factor per env step."""
    gae_lambda: float = 0.95
    """GAE lambda (bias/variance trade-off of the advantage)."""
    n_epochs: int = 10
    """Passes over each rollout."""
    n_minibatches: int = 4
    """Minibatches per epoch (minibatch size = num_envs * n_steps / n_minibatches)."""
    clip_coef: float = 0.2
    """Surrogate clipping range epsilon (ratio clipped to [1 - eps, 1 + eps])."""
    clip_value_loss: bool = False
    """Clip the value update around the rollout's value estimate (same epsilon). Off by default: with unnormalized
    returns of tens to hundreds, a +-0.2 step per update stalls the critic (Andrychowicz et al. 2020 also found
    value clipping harmful); SB3's default is off too."""
    value_coef: float = 0.5
    """Weight of the value loss."""
    entropy_coef: float = 0.0
    """Weight of the entropy bonus."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clip."""
    learning_rate: float = 3e-4
    """Adam learning rate (initial value for the linear schedule)."""
    lr_schedule: Literal["constant", "linear", "adaptive"] = "linear"
    """``linear`` anneals the learning rate to 0 over ``train.total_steps``; ``adaptive`` (rsl_rl) divides it by 1.5
    when a minibatch's approximate KL exceeds 2 x ``desired_kl`` and multiplies it by 1.5 below 0.5 x
    ``desired_kl``, within [1e-5, 1e-2]."""
    desired_kl: float = 0.01
    """KL the ``adaptive`` schedule steers to [nats]."""
    target_kl: float | None = 0.02
    """Stop the epoch loop when the approximate KL(old || new) of a minibatch exceeds this; null = never."""
    normalize_advantages: bool = True
    """Standardize advantages per minibatch."""
    normalize_obs: bool = True
    """Running mean/std observation normalization (also inside the exported policy)."""
    actor_hidden: tuple[int, ...] = (64, 64)
    """Policy MLP hidden widths."""
    critic_hidden: tuple[int, ...] = (64, 64)
    """Value MLP hidden widths."""
    activation: Literal["relu", "tanh", "elu", "silu", "gelu"] = "tanh"
    """Hidden activation."""
    init_log_std: float = 0.0
    """Initial log standard deviation of the action distribution."""
    update_threads: int = field(default=0, metadata={"hash": "unless_default"})
    """Torch threads for the gradient update only (0: ``train.torch_threads`` throughout). The rollout keeps
    ``train.torch_threads``, so an env stepped on MuJoCo's thread pool has the cores while it runs (the Go2 recipe
    on 2 cores: 13 % less time per iteration, bench/results/go2.md)."""

    def __post_init__(self):
        if self.update_threads < 0:
            raise ValueError(f"ppo.update_threads must be >= 0 (0: train.torch_threads), got {self.update_threads}")
        for name in ("num_envs", "n_steps", "n_epochs", "n_minibatches"):
            if getattr(self, name) < 1:
                raise ValueError(f"ppo.{name} must be >= 1, got {getattr(self, name)}")
        if (self.num_envs * self.n_steps) % self.n_minibatches:
            raise ValueError(f"ppo.num_envs * ppo.n_steps ({self.num_envs * self.n_steps}) must be divisible by "
                             f"ppo.n_minibatches ({self.n_minibatches})")
        if not 0.0 < self.gamma <= 1.0 or not 0.0 <= self.gae_lambda <= 1.0:
            raise ValueError(f"ppo.gamma must be in (0, 1] and ppo.gae_lambda in [0, 1], got {self.gamma}, "
                             f"{self.gae_lambda}")
        if self.clip_coef <= 0 or self.learning_rate <= 0 or self.max_grad_norm <= 0:
            raise ValueError("ppo.clip_coef, ppo.learning_rate and ppo.max_grad_norm must be > 0")
        if self.desired_kl <= 0:
            raise ValueError(f"ppo.desired_kl must be > 0, got {self.desired_kl}")
        if self.target_kl is not None and self.target_kl <= 0:
            raise ValueError(f"ppo.target_kl must be > 0 or null, got {self.target_kl}")


@dataclass(frozen=True)
class PpoExperiment:
    algo: Literal["ppo"]
    """Algorithm selector."""
    env: EnvConfig
    """Environment and randomization."""
    seed: int = 0
    """Seed of networks, action sampling, minibatch order and training env episodes (0 <= seed < 1000)."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Training loop: budget, logging, evaluation, checkpoints."""
    ppo: PpoConfig = field(default_factory=PpoConfig)
    """PPO hyperparameters."""
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    """Where transitions come from: ``backend: local`` (this process's env, default) or ``ray`` (rollout-worker
    actors, ``rollout.workers``); see docs/scale.md."""
    ray: RayConfig = field(default_factory=RayConfig)
    """Ray cluster for ``rollout.backend: ray`` (``ray.address``; null = private local cluster on 127.0.0.1)."""

    def __post_init__(self):
        if not 0 <= self.seed < 1000:
            raise ValueError(f"seed must be in [0, 1000), got {self.seed}")


STAT_NAMES = ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_frac")
_ENTROPY_CONST = 0.5 * math.log(2 * math.pi * math.e)  # entropy of N(0, 1) per dimension


# --------------------------------------------------------------------------- learner


def train_reset_seed(seed: int, segment: int) -> int:
    """Vector-env reset seed of training segment ``segment`` (env i gets this + i; all < TRAIN_SEED_LIMIT)."""
    return (seed * 1_000_003 + segment * 7_919) % (TRAIN_SEED_LIMIT - 10_000)


class PpoLearner:
    """PPO on ``num_envs`` vectorized envs. See ``robot_rl.train.runner`` for the driving loop."""

    algo = "ppo"

    def __init__(self, cfg: PpoExperiment):
        self.cfg = c = cfg.ppo
        self.seed = cfg.seed
        torch.manual_seed(cfg.seed)
        self.ray_rollouts = cfg.rollout.backend == "ray"
        if self.ray_rollouts:  # Ray rollout workers stand in for the vector env (robot_rl.scale.source)
            self.env = make_rollout_source(cfg, c.num_envs, default_staleness=0)
        else:
            self.env = make_vec_env(cfg.env.id, c.num_envs, randomization=cfg.env.randomization, seed=cfg.seed)
        space = self.env.single_observation_space
        self.n_obs = int(sum(np.prod(space[k].shape) for k in ("observation", "desired_goal"))
                         if hasattr(space, "spaces") else np.prod(space.shape))
        self.n_act = int(np.prod(self.env.single_action_space.shape))
        self.normalizer = make_normalizer(self.n_obs, c.normalize_obs)
        # Asymmetric critic: an env with privileged observations (``privileged_size``, ``privileged()``, e.g. a
        # legged robot's base velocity, which the robot cannot measure) shows them to the critic only; the actor,
        # and so the exported policy, sees the observation alone.
        self.n_priv = 0 if self.ray_rollouts else int(getattr(self.env, "privileged_size", 0))
        self.priv_normalizer = make_normalizer(self.n_priv, bool(self.n_priv) and c.normalize_obs)
        self.actor = mlp(self.n_obs, self.n_act, c.actor_hidden, c.activation, output_gain=0.01)
        self.critic = mlp(self.n_obs + self.n_priv, 1, c.critic_hidden, c.activation, output_gain=1.0)
        self.log_std = nn.Parameter(torch.full((self.n_act,), float(c.init_log_std)))
        self.params = [*self.actor.parameters(), *self.critic.parameters(), self.log_std]
        # parameters and their .grad become views of one flat vector each: autograd accumulates into one gradient,
        # the gradient-norm clip and Adam are one pass over it
        self.flat, self.flat_grad = pack_parameters(self.params)
        self.opt = flat_adam(self.flat, self.flat_grad, [(0, self.flat.numel(), c.learning_rate)], eps=1e-5)
        # numpy views of the actor / critic weights (Adam and load_state_dict update them in place) for rollouts
        self._np_nets = (_np_layers(self.actor), _np_layers(self.critic)) \
            if c.activation in ("relu", "tanh", "elu") else None
        self.storage = RolloutStorage(c.n_steps, c.num_envs, self.n_obs + self.n_priv, self.n_act)
        self.steps_per_iteration = c.num_envs * c.n_steps
        self.total_iterations = max(1, math.ceil(cfg.train.total_steps / self.steps_per_iteration))
        self.env_steps = 0
        self.iteration = 0
        self.segment = 0
        self._stats: dict[str, list[float]] = {}
        self.finished_episodes: list[tuple[float, int, float]] = []

    def begin_segment(self, segment: int) -> None:
        """Reset all envs with seeds derived from (seed, segment); partial episodes are dropped."""
        self.segment = int(segment)
        obs, _ = self.env.reset(seed=train_reset_seed(self.seed, self.segment))
        self._obs = torch.from_numpy(flatten_goal_obs(obs).copy())
        self._priv = np.asarray(self.env.privileged(), dtype=np.float32) if self.n_priv else None
        self._ep_return = np.zeros(self.cfg.num_envs)
        self._ep_len = np.zeros(self.cfg.num_envs, dtype=np.int64)

    def normalize(self, obs: torch.Tensor, update: bool) -> torch.Tensor:
        """Normalized observations ``[..., n_obs]`` (``update``: fold them into the running statistics first)."""
        if update and isinstance(self.normalizer, RunningNormalizer):
            self.normalizer.update(obs)
        return self.normalizer(obs)

    def train_until(self, target_step: int) -> None:
        """Run whole iterations (rollout + update) until ``env_steps >= target_step``."""
        while self.env_steps < target_step:
            if self.ray_rollouts:
                collect_ppo_rollout(self, self.env)
            else:
                self._rollout()
            self.update()
            self.iteration += 1

    def _np_forward(self, which: int, obs: np.ndarray) -> np.ndarray:
        """Actor (0) or critic (1) on normalized float32 obs ``[N, n_obs]``: numpy on views of the live weights for
        relu/tanh nets (no torch dispatch per layer in the env loop), the torch module otherwise.
        """
        if self._np_nets is not None:
            return _np_mlp(self._np_nets[which], obs, self.cfg.activation)
        with torch.no_grad():
            return (self.actor, self.critic)[which](torch.from_numpy(obs)).numpy()

    def _joint_np_net(self) -> list[tuple[np.ndarray, np.ndarray]] | None:
        """Actor and critic as one numpy MLP ``[n_obs] -> [mean (n_act), value]`` (stacked first layer, block-diagonal
        later ones), a copy of the current weights for one rollout; None unless both have the same hidden widths and
        a numpy-able activation. One pass per env step instead of two.
        """
        if self._np_nets is None or tuple(self.cfg.actor_hidden) != tuple(self.cfg.critic_hidden) or self.n_priv:
            return None
        layers = []
        for i, ((wa, ba), (wc, bc)) in enumerate(zip(*self._np_nets)):
            if i == 0:
                w = np.concatenate([wa, wc])
            else:
                w = np.zeros((wa.shape[0] + wc.shape[0], wa.shape[1] + wc.shape[1]), dtype=np.float32)
                w[:wa.shape[0], :wa.shape[1]] = wa
                w[wa.shape[0]:, wa.shape[1]:] = wc
            layers.append((w, np.concatenate([ba, bc])))
        return layers

    def _np_normalize(self, obs: np.ndarray, normalizer: nn.Module | None = None) -> np.ndarray:
        n = self.normalizer if normalizer is None else normalizer
        if not isinstance(n, RunningNormalizer):
            return obs
        return np.clip((obs - n.mean_f32.numpy()) * n.inv_std_f32.numpy(), -n.clip, n.clip)

    def _fold_normalize(self, obs: np.ndarray, normalizer: nn.Module | None = None) -> np.ndarray:
        """``normalizer.update(obs)`` then ``_np_normalize(obs)`` for raw float32 obs ``[N, n_obs]``.

        The same float64 Chan merge as ``RunningNormalizer.update`` (bit-identical statistics, see
        tests/algos/test_ppo_losses.py) on numpy views of its buffers, in about a third of the numpy calls: the
        rollout folds every vector step in.
        """
        n = self.normalizer if normalizer is None else normalizer
        if not isinstance(n, RunningNormalizer):
            return obs
        mean, var, count_v = n.mean.numpy(), n.var.numpy(), n.count.numpy()
        x = obs.astype(np.float64)
        k = x.shape[0]
        batch_mean = np.add.reduce(x, 0) / k  # = x.mean(0)
        d = x - batch_mean
        batch_var = np.add.reduce(d * d, 0) / k  # = x.var(0)
        count = float(count_v)
        total = count + k
        delta = batch_mean - mean
        m2 = var * count + batch_var * k + np.square(delta) * (count * k / total)
        mean += delta * (k / total)
        np.divide(m2, total, out=var)
        count_v[()] = total
        mean_f32, inv_std_f32 = n.mean_f32.numpy(), n.inv_std_f32.numpy()
        mean_f32[:] = mean
        inv_std_f32[:] = 1.0 / np.sqrt(var + n.eps)
        return np.clip((obs - mean_f32) * inv_std_f32, -n.clip, n.clip)

    def _rollout(self) -> None:
        """Collect ``n_steps`` vector steps into ``self.storage`` (numpy throughout, written into its tensors)."""
        c, s = self.cfg, self.storage
        s_obs, s_act, s_logp, s_val = s.obs.numpy(), s.actions.numpy(), s.log_probs.numpy(), s.values.numpy()
        s_rew, s_done = s.rewards.numpy(), s.dones.numpy()
        log_std = self.log_std.detach().numpy().copy()
        std = np.exp(log_std)
        logp_const = np.float32(-log_std.sum() - 0.5 * math.log(2 * math.pi) * self.n_act)
        obs_raw = self._obs.numpy()
        priv_raw = self._priv
        joint = self._joint_np_net()
        for t in range(c.n_steps):
            obs = self._fold_normalize(obs_raw)
            if joint is not None:
                out = _np_mlp(joint, obs, c.activation)
                mean, value = out[:, :self.n_act], out[:, self.n_act]
            elif self.n_priv:
                critic_in = np.concatenate([obs, self._fold_normalize(priv_raw, self.priv_normalizer)], axis=1)
                mean, value = self._np_forward(0, obs), self._np_forward(1, critic_in)[:, 0]
                obs = critic_in  # stored whole: the actor reads its first n_obs columns
            else:
                mean, value = self._np_forward(0, obs), self._np_forward(1, obs)[:, 0]
            noise = torch.randn(mean.shape).numpy()  # torch's generator, as before
            action = mean + std * noise
            s_obs[t] = obs
            s_act[t] = action
            # gaussian_log_prob(mean, log_std, action) of robot_rl.nets, in numpy
            s_logp[t] = (-0.5 * np.square((action - mean) / std)).sum(-1) + logp_const
            s_val[t] = value
            next_obs, rew, terminated, truncated, infos = self.env.step(np.clip(action, -1.0, 1.0))
            rew = np.asarray(rew, dtype=np.float32).copy()
            self._ep_return += rew.astype(np.float64)
            self._ep_len += 1
            ended = np.logical_or(terminated, truncated)
            bootstrap = np.logical_and(truncated, np.logical_not(terminated))
            if bootstrap.any():  # time-limit truncation: bootstrap from V(final_obs)
                idx = np.flatnonzero(bootstrap)
                final = self._np_normalize(np.asarray(final_obs_rows(infos["final_obs"], idx), dtype=np.float32))
                if self.n_priv:
                    final_priv = np.asarray(infos["final_privileged"], dtype=np.float32)[idx]
                    final = np.concatenate([final, self._np_normalize(final_priv, self.priv_normalizer)], axis=1)
                rew[idx] += c.gamma * self._np_forward(1, final)[:, 0]
            s_rew[t] = rew
            s_done[t] = terminated
            succ = infos.get("is_success")
            for i in np.flatnonzero(ended):
                success = float(bool(np.asarray(succ)[i])) if succ is not None else float("nan")
                self.finished_episodes.append((float(self._ep_return[i]), int(self._ep_len[i]), success))
                self._ep_return[i], self._ep_len[i] = 0.0, 0
            obs_raw = np.asarray(flatten_goal_obs(next_obs), dtype=np.float32).copy()
            if self.n_priv:
                priv_raw = np.asarray(self.env.privileged(), dtype=np.float32)
            self.env_steps += c.num_envs
        self._obs = torch.from_numpy(obs_raw)
        self._priv = priv_raw
        critic_in = self._np_normalize(obs_raw)
        if self.n_priv:
            critic_in = np.concatenate([critic_in, self._np_normalize(priv_raw, self.priv_normalizer)], axis=1)
        last_values = self._np_forward(1, critic_in)[:, 0]
        adv, ret = gae_numpy(s_rew, s_val, s_done, last_values, c.gamma, c.gae_lambda)
        s.advantages, s.returns = torch.from_numpy(adv), torch.from_numpy(ret)

    def update(self) -> None:
        """``n_epochs`` passes of minibatch gradient steps over the rollout in ``self.storage`` (KL early stop)."""
        c, s = self.cfg, self.storage
        if c.lr_schedule == "linear":
            self.lr = c.learning_rate * max(0.0, 1.0 - self.iteration / self.total_iterations)
        n = s.n_steps * s.n_envs
        mb = n // c.n_minibatches
        # one [n, n_obs + n_act + 4] table: a minibatch is one row gather per epoch and views of it
        table = torch.cat([s.obs.reshape(n, -1), s.actions.reshape(n, -1), s.log_probs.reshape(n, 1),
                           s.values.reshape(n, 1), s.advantages.reshape(n, 1), s.returns.reshape(n, 1)], dim=1)
        stats = []
        stop = False
        # Denormal floats (e.g. Adam moments of a gradient that stays ~0) cost ~30x a normal float on x86; flushed
        # to zero during the update only
        torch.set_flush_denormal(True)
        threads = torch.get_num_threads()
        if c.update_threads:
            torch.set_num_threads(c.update_threads)
        try:
            for _ in range(c.n_epochs):
                shuffled = table[torch.randperm(n)]
                for start in range(0, n, mb):
                    st = self.compute_grads(shuffled[start:start + mb])
                    clip_grad_norm_flat_(self.flat_grad, c.max_grad_norm)
                    self.opt.step()
                    stats.append(st)
                    kl = float(st[3])
                    if c.lr_schedule == "adaptive":
                        self._adapt_lr(kl)
                    if c.target_kl is not None and kl > c.target_kl:
                        stop = True
                        break
                if stop:
                    break
        finally:
            torch.set_flush_denormal(False)
            torch.set_num_threads(threads)
        for k, v in zip(STAT_NAMES, torch.stack(stats).mean(0).tolist()):
            self._stats.setdefault(k, []).append(v)
        self._stats.setdefault("learning_rate", []).append(self.lr)

    def compute_grads(self, minibatch: torch.Tensor) -> torch.Tensor:
        """Gradient of the PPO loss on one minibatch into ``self.flat_grad`` (autograd; before the norm clip).

        ``minibatch`` ``[B, n_obs + n_act + 4]``: rows of the update's table, columns normalized obs, actions,
        behaviour log-prob, value estimate, (raw) advantage, return. Returns the statistics
        ``[policy_loss, value_loss, entropy, approx_kl, clip_frac]`` (``STAT_NAMES``).
        """
        c = self.cfg
        n_in = self.n_obs + self.n_priv
        k = n_in + self.n_act
        critic_in, act = minibatch[:, :n_in], minibatch[:, n_in:k]
        obs = critic_in[:, :self.n_obs]
        old_logp, old_v, adv, ret = (minibatch[:, k + j] for j in range(4))
        if c.normalize_advantages:
            std, mean = torch.std_mean(adv)
            adv = (adv - mean) / (std + 1e-8)
        log_ratio = gaussian_log_prob(self.actor(obs), self.log_std, act) - old_logp
        ratio = log_ratio.exp()
        pg = ppo_clip_loss(ratio, adv, c.clip_coef)
        vl = value_loss(self.critic(critic_in).squeeze(-1), old_v, ret, c.clip_coef if c.clip_value_loss else None)
        entropy = self.log_std.sum() + _ENTROPY_CONST * self.n_act
        loss = pg + c.value_coef * vl - c.entropy_coef * entropy
        self.flat_grad.zero_()  # not opt.zero_grad(): that would detach the .grad views from the flat gradient
        loss.backward()
        with torch.no_grad():
            clip_frac = ((ratio - 1.0).abs() > c.clip_coef).float().mean()
            return torch.stack([pg, vl, entropy, approx_kl(log_ratio), clip_frac]).detach()

    @property
    def lr(self) -> float:
        """Adam's current learning rate (the schedules change it between minibatches)."""
        return self.opt.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        self.opt.param_groups[0]["lr"] = float(value)

    def _adapt_lr(self, kl: float) -> None:
        lr = self.lr
        if kl > 2.0 * self.cfg.desired_kl:
            lr = max(1e-5, lr / 1.5)
        elif kl < 0.5 * self.cfg.desired_kl:
            lr = min(1e-2, lr * 1.5)
        self.lr = lr

    # ---- logging, policy, state

    def pop_stats(self) -> dict[str, float]:
        out = {"iterations": float(self.iteration)}
        for k in ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_frac", "learning_rate"):
            vals = self._stats.get(k, [])
            out[k] = float(np.mean(vals)) if vals else float("nan")
        eps = self.finished_episodes
        out["episodes"] = float(len(eps))
        out["train_return"] = float(np.mean([e[0] for e in eps])) if eps else float("nan")
        out["train_length"] = float(np.mean([e[1] for e in eps])) if eps else float("nan")
        self._stats, self.finished_episodes = {}, []
        if self.ray_rollouts:  # batches, stale batches dropped, worker restarts: into metrics.csv
            out.update(self.env.pop_stats())
        if hasattr(self.env, "pop_train_stats"):  # e.g. reward terms, tracking errors and falls of legged tasks
            out.update(self.env.pop_train_stats())
        return out

    def policy_module(self) -> PolicyModule:
        return PolicyModule(self.normalizer, self.actor, self.n_act, "clip")

    def policy_spec(self) -> dict:
        return {"n_obs": self.n_obs, "n_act": self.n_act, "n_out": self.n_act, "hidden": list(self.cfg.actor_hidden),
                "activation": self.cfg.activation, "squash": "clip", "normalize_obs": self.cfg.normalize_obs,
                # clones: the parameters are views of the flat vector, which torch.save would store whole
                "state_dict": {k: v.clone() for k, v in self.policy_module().state_dict().items()}}

    WEIGHT_KEYS = ("actor", "critic", "log_std", "normalizer", "priv_normalizer", "opt")
    """The ``state_dict`` entries a fine-tuning run starts from (``train.init_from``)."""

    def state_dict(self) -> dict:
        return {"actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
                "log_std": self.log_std.detach().clone(), "normalizer": self.normalizer.state_dict(),
                "priv_normalizer": self.priv_normalizer.state_dict(),
                "opt": copy.deepcopy(self.opt.state_dict()), "env_steps": self.env_steps, "iteration": self.iteration,
                "segment": self.segment, "stats": {k: list(v) for k, v in self._stats.items()},
                "episodes": [list(e) for e in self.finished_episodes]}

    def load_state_dict(self, s: dict) -> None:
        self.actor.load_state_dict(s["actor"])
        self.critic.load_state_dict(s["critic"])
        with torch.no_grad():
            self.log_std.copy_(s["log_std"])
        self.normalizer.load_state_dict(s["normalizer"])
        self.priv_normalizer.load_state_dict(s.get("priv_normalizer", {}))
        load_adam_state(self.opt, s["opt"], self.flat)
        self.env_steps, self.iteration, self.segment = s["env_steps"], s["iteration"], s["segment"]
        self._stats = {k: list(v) for k, v in s["stats"].items()}
        self.finished_episodes = [tuple(e) for e in s["episodes"]]

    def close(self) -> None:
        self.env.close()
