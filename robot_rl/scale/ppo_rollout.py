"""Fill a ``PpoLearner``'s rollout storage from a rollout source (the Ray path of PPO's ``train_until``).

Workers act with the policy snapshot of the current version (normalizer + mean MLP + log-std) and return raw
observations, actions and behaviour log-probabilities; here the learner adds what needs its critic: values, the
time-limit bootstrap ``r += gamma V(final_obs)`` (as ``PpoLearner._rollout``) and GAE. The observation normalizer
is folded once per batch after the values are computed (the local path folds it every step), so the stored
normalized observations are exactly the ones the workers acted on.

``ppo_train_until`` is the learner loop of ``PpoLearner.train_until`` with the source in place of the vector env; it
calls the real ``PpoLearner._update`` (no copy of the PPO math here).
"""

from __future__ import annotations

import numpy as np
import torch

from robot_rl.scale.protocol import OnPolicyLearner
from robot_rl.scale.worker import gaussian_snapshot


def _stack(batches: list[dict], key: str) -> torch.Tensor:
    return torch.from_numpy(np.concatenate([b[key] for b in batches], axis=1))


@torch.no_grad()
def collect_ppo_rollout(learner: OnPolicyLearner, source) -> None:
    """Publish the learner's policy, pull one batch per worker and write ``learner.storage`` (+ GAE).

    Updates ``learner.env_steps``, its episode statistics and its observation normalizer.
    """
    c, s = learner.cfg, learner.storage
    source.set_policy(gaussian_snapshot(learner))
    batches = source.collect(c.n_steps)
    obs_raw = _stack(batches, "obs")  # [T, N, n_obs]
    T, N, n_obs = obs_raw.shape
    if (T, N) != (c.n_steps, c.num_envs):
        raise ValueError(f"rollout source returned [{T}, {N}] steps x envs, PPO expects [{c.n_steps}, {c.num_envs}]")
    obs = learner.normalize(obs_raw, update=False)
    s.obs[:] = obs
    s.actions[:] = _stack(batches, "actions")
    s.log_probs[:] = _stack(batches, "log_probs")
    s.values[:] = learner.critic(obs).squeeze(-1)
    rew = _stack(batches, "rewards").clone()
    term = _stack(batches, "terminated")
    trunc = _stack(batches, "truncated")
    offset = 0
    for b in batches:  # time-limit truncation: bootstrap from V(final_obs)
        n = b["obs"].shape[1]
        if b["final_t"].size:
            t, i = torch.from_numpy(b["final_t"].copy()), torch.from_numpy(b["final_i"].copy())
            boot = trunc[t, offset + i] & ~term[t, offset + i]
            if boot.any():
                sel = boot.numpy()
                final = learner.normalize(torch.from_numpy(b["final_obs"][sel].copy()), update=False)
                rew[t[sel], offset + i[sel]] += c.gamma * learner.critic(final).squeeze(-1)
        offset += n
    s.rewards[:] = rew
    s.dones[:] = term.float()
    last_obs = torch.from_numpy(np.concatenate([b["last_obs"] for b in batches]))
    s.compute_returns(learner.critic(learner.normalize(last_obs, update=False)).squeeze(-1), c.gamma, c.gae_lambda)
    learner.normalize(obs_raw.reshape(-1, n_obs), update=True)  # fold this batch into the running statistics
    for b in batches:
        learner.finished_episodes.extend(b["episodes"])
    learner.env_steps += T * N


def ppo_train_until(learner: OnPolicyLearner, source, target_step: int) -> None:
    """Whole PPO iterations (source rollout + ``learner.update()``) until ``learner.env_steps >= target_step``."""
    while learner.env_steps < target_step:
        collect_ppo_rollout(learner, source)
        learner.update()
        learner.iteration += 1
