"""Rollout worker: one vectorized, domain-randomized env plus a snapshot of the acting policy.

The same class runs in-process (``LocalRolloutSource``) and as a Ray actor (``RayRolloutSource``), so both sources
produce identical batches for the same (run seed, worker index, policy versions). No ray import here.

Policy snapshots are plain dicts of tensors (``policy_snapshot`` builders below), broadcast once per version:

- ``{"kind": "gaussian", ...}``: PPO's diagonal Gaussian (``actor`` MLP mean, ``log_std``); the env gets
  ``clip(a, -1, 1)``, the batch keeps the unclipped ``a`` and its ``log_prob``.
- ``{"kind": "tanh_gaussian", ...}``: SAC's squashed Gaussian (actor outputs ``[mean, raw log-std]``).
- ``{"kind": "uniform", ...}``: uniform random actions in [-1, 1] (SAC warm-up, PETS random data collection).

Batch (``dict``), ``T`` = steps, ``n`` = envs of this worker:
``obs`` ``[T, n, n_obs]`` raw float32 observations acted on; ``actions`` ``[T, n, n_act]``; ``log_probs`` ``[T, n]``
(NaN for kinds without one); ``rewards`` ``[T, n]`` float32; ``terminated`` / ``truncated`` ``[T, n]`` bool;
``final_t``, ``final_i`` ``[k]`` int and ``final_obs`` ``[k, n_obs]``: last observations of the k episodes that ended
(at step ``final_t`` in env ``final_i``); ``last_obs`` ``[n, n_obs]`` the observation after step T-1;
``episodes`` list of ``(return, length, success)``; ``physics_errors`` int; ``worker``, ``incarnation``, ``version``,
``seq`` (batch number of this incarnation), ``pid``, ``env_steps`` (= T n), ``collect_s`` (seconds stepping inside
the worker).
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch

from robot_rl.nets import make_normalizer, mlp
from robot_rl.nets.distributions import gaussian_log_prob, squash_log_std, tanh_gaussian_sample
from robot_rl.scale.envs import final_obs_rows, flatten_goal_obs, make_vec_env
from robot_rl.scale.protocol import GaussianSnapshotLearner, SnapshotLearner
from robot_rl.scale.seeding import worker_env_seed, worker_reset_seed, worker_reset_torch_seed, worker_torch_seed

# --------------------------------------------------------------------------- policy snapshots


def gaussian_snapshot(learner: GaussianSnapshotLearner) -> dict:
    """Acting policy of a ``PpoLearner`` (normalizer + mean MLP + state-independent log-std) as plain tensors."""
    c = learner.cfg
    return {"kind": "gaussian", "n_obs": learner.n_obs, "n_act": learner.n_act, "hidden": tuple(c.actor_hidden),
            "activation": c.activation, "normalize_obs": c.normalize_obs,
            "actor": {k: v.detach().clone() for k, v in learner.actor.state_dict().items()},
            "normalizer": {k: v.detach().clone() for k, v in learner.normalizer.state_dict().items()},
            "log_std": learner.log_std.detach().clone()}


def tanh_gaussian_snapshot(learner: SnapshotLearner) -> dict:
    """Acting policy of a ``SacLearner`` (normalizer + ``[mean, raw log-std]`` MLP) as plain tensors."""
    c = learner.cfg
    return {"kind": "tanh_gaussian", "n_obs": learner.n_obs, "n_act": learner.n_act, "hidden": tuple(c.actor_hidden),
            "activation": c.activation, "normalize_obs": c.normalize_obs,
            "actor": {k: v.detach().clone() for k, v in learner.actor.state_dict().items()},
            "normalizer": {k: v.detach().clone() for k, v in learner.normalizer.state_dict().items()}}


def uniform_snapshot(n_act: int) -> dict:
    """Uniform random actions in [-1, 1]^n_act."""
    return {"kind": "uniform", "n_act": int(n_act)}


class _Actor:
    """Torch module rebuilt from a snapshot; ``act(obs [n, n_obs], gen) -> (action [n, n_act], log_prob [n])``."""

    def __init__(self, snap: dict):
        self.kind = snap["kind"]
        self.n_act = snap["n_act"]
        if self.kind == "uniform":
            return
        if self.kind not in ("gaussian", "tanh_gaussian"):
            raise ValueError(f"unknown policy snapshot kind {self.kind!r} (gaussian, tanh_gaussian, uniform)")
        n_out = snap["n_act"] * (2 if self.kind == "tanh_gaussian" else 1)
        self.actor = mlp(snap["n_obs"], n_out, snap["hidden"], snap["activation"])
        self.actor.load_state_dict(snap["actor"])
        self.normalizer = make_normalizer(snap["n_obs"], snap["normalize_obs"])
        self.normalizer.load_state_dict(snap["normalizer"])
        self.log_std = snap.get("log_std")

    @torch.no_grad()
    def act(self, obs: np.ndarray, gen: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
        n = obs.shape[0]
        if self.kind == "uniform":
            a = torch.rand(n, self.n_act, generator=gen) * 2.0 - 1.0
            return a.numpy(), np.full(n, np.nan, dtype=np.float32)
        out = self.actor(self.normalizer(torch.from_numpy(obs)))
        if self.kind == "gaussian":
            noise = torch.randn(out.shape, generator=gen)
            a = out + self.log_std.exp() * noise
            return a.numpy(), gaussian_log_prob(out, self.log_std, a).numpy()
        noise = torch.randn(n, self.n_act, generator=gen)
        a, logp = tanh_gaussian_sample(out[:, : self.n_act], squash_log_std(out[:, self.n_act:]), noise)
        return a.numpy(), logp.numpy()


# --------------------------------------------------------------------------- worker


class RolloutWorker:
    """``num_envs`` envs of ``env_id`` seeded from (run seed, worker index, incarnation); collects batches.

    ``incarnation`` counts restarts of this worker slot (the source passes it with every call; a restarted Ray
    actor re-runs ``__init__`` with incarnation 0 and rebuilds its env on the first call that names a newer one).
    """

    def __init__(self, env_id: str, num_envs: int, *, randomization: str | None, run_seed: int, worker_index: int,
                 incarnation: int = 0, torch_threads: int = 1):
        torch.set_num_threads(torch_threads)
        self.env_id, self.num_envs, self.randomization = env_id, int(num_envs), randomization
        self.run_seed, self.worker_index = int(run_seed), int(worker_index)
        self.env = None
        self._build(incarnation)

    def _build(self, incarnation: int) -> None:
        if self.env is not None:
            self.env.close()
        self.incarnation = int(incarnation)
        seed = worker_env_seed(self.run_seed, self.worker_index, self.incarnation)
        self.env = make_vec_env(self.env_id, self.num_envs, randomization=self.randomization, seed=seed)
        self.gen = torch.Generator().manual_seed(worker_torch_seed(self.run_seed, self.worker_index, self.incarnation))
        obs, _ = self.env.reset(seed=seed)
        self.obs = flatten_goal_obs(obs).copy()
        self.ep_return = np.zeros(self.num_envs)
        self.ep_len = np.zeros(self.num_envs, dtype=np.int64)
        self.seq = 0
        self.version = None
        self.actor = None

    def _sync(self, incarnation: int) -> None:
        if incarnation != self.incarnation:
            self._build(incarnation)

    def pid(self) -> int:
        """OS process id of this worker (tests kill it to simulate a failure)."""
        return os.getpid()

    def spaces(self) -> tuple:
        """``(single_observation_space, single_action_space)`` of the env (flat observation for goal tasks)."""
        import gymnasium as gym

        obs_space = self.env.single_observation_space
        if isinstance(obs_space, gym.spaces.Dict):
            spaces = obs_space.spaces
            low = np.concatenate([spaces["observation"].low, spaces["desired_goal"].low]).astype(np.float32)
            high = np.concatenate([spaces["observation"].high, spaces["desired_goal"].high]).astype(np.float32)
            obs_space = gym.spaces.Box(low, high, dtype=np.float32)
        return obs_space, self.env.single_action_space

    def reset(self, reset_seed: int, incarnation: int = 0) -> np.ndarray:
        """Reset every env and the action sampler from ``reset_seed`` (mixed with the worker index and incarnation);
        partial episodes are dropped.

        Returns the flat observations ``[num_envs, n_obs]``.
        """
        self._sync(incarnation)
        obs, _ = self.env.reset(seed=worker_reset_seed(reset_seed, self.worker_index, self.incarnation))
        self.gen.manual_seed(worker_reset_torch_seed(reset_seed, self.worker_index, self.incarnation))
        self.obs = flatten_goal_obs(obs).copy()
        self.ep_return[:] = 0.0
        self.ep_len[:] = 0
        return self.obs.copy()

    def collect(self, n_steps: int, snapshot: dict, version: int, incarnation: int = 0) -> dict:
        """Step every env ``n_steps`` times with policy ``snapshot`` (version ``version``); returns a batch."""
        self._sync(incarnation)
        if version != self.version or self.actor is None:
            self.actor = _Actor(snapshot)
            self.version = version
        t0 = time.perf_counter()
        n, T = self.num_envs, int(n_steps)
        n_obs = self.obs.shape[1]
        obs_buf = np.empty((T, n, n_obs), np.float32)
        act_buf = np.empty((T, n, self.actor.n_act), np.float32)
        logp = np.empty((T, n), np.float32)
        rew = np.empty((T, n), np.float32)
        term = np.empty((T, n), bool)
        trunc = np.empty((T, n), bool)
        final_t, final_i, final_rows, episodes = [], [], [], []
        physics_errors = 0
        for t in range(T):
            a, lp = self.actor.act(self.obs, self.gen)
            obs_buf[t], act_buf[t], logp[t] = self.obs, a, lp
            next_obs, r, te, tr, infos = self.env.step(np.clip(a, -1.0, 1.0))
            rew[t], term[t], trunc[t] = r, te, tr
            physics_errors += int(np.count_nonzero(infos.get("physics_error", False)))
            self.ep_return += np.asarray(r, dtype=np.float64)
            self.ep_len += 1
            ended = np.flatnonzero(np.logical_or(te, tr))
            if ended.size:
                final_rows.append(final_obs_rows(infos["final_obs"], ended))
                succ = infos.get("is_success")
                for i in ended:
                    final_t.append(t)
                    final_i.append(int(i))
                    s = float(bool(np.asarray(succ)[i])) if succ is not None else float("nan")
                    episodes.append((float(self.ep_return[i]), int(self.ep_len[i]), s))
                    self.ep_return[i], self.ep_len[i] = 0.0, 0
            self.obs = flatten_goal_obs(next_obs).copy()
        self.seq += 1
        return {"obs": obs_buf, "actions": act_buf, "log_probs": logp, "rewards": rew, "terminated": term,
                "truncated": trunc, "final_t": np.asarray(final_t, np.int64), "final_i": np.asarray(final_i, np.int64),
                "final_obs": np.concatenate(final_rows) if final_rows else np.zeros((0, n_obs), np.float32),
                "last_obs": self.obs.copy(), "episodes": episodes, "physics_errors": physics_errors,
                "worker": self.worker_index, "incarnation": self.incarnation, "version": int(version),
                "seq": self.seq, "pid": os.getpid(), "env_steps": T * n, "collect_s": time.perf_counter() - t0}

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
            self.env = None


def next_observations(batch: dict) -> np.ndarray:
    """``[T, n, n_obs]`` successor of every transition: ``obs[t + 1]``, ``last_obs`` after the last step, and the
    episode's true last observation where it ended (off-policy replay needs ``s'`` of terminal/truncated steps).
    """
    obs = batch["obs"]
    nxt = np.concatenate([obs[1:], batch["last_obs"][None]], axis=0)
    if batch["final_t"].size:
        nxt[batch["final_t"], batch["final_i"]] = batch["final_obs"]
    return nxt
