"""Feed an off-policy learner's replay buffer from a rollout source (the Ray path of ``SacLearner.train_until``).

Workers act with uniform random actions before ``sac.learning_starts`` and with the SAC actor snapshot after; stale
batches are kept (off-policy data stays valid). Every transition goes to ``learner.replay`` with its true successor
(``next_observations``: the episode's last observation where it ended) and ``done = terminated``; updates follow the
learner's ``utd_ratio`` per env step as in its local loop (same count, but run after each worker batch instead of
after each step), through the real ``SacLearner.update``. PETS-style
data collection uses the same batches with ``uniform_snapshot`` and no learner (``transitions(batch)``).
"""

from __future__ import annotations

import numpy as np

from robot_rl.scale.protocol import OffPolicyLearner
from robot_rl.scale.worker import next_observations, tanh_gaussian_snapshot, uniform_snapshot


def transitions(batch: dict) -> tuple[np.ndarray, ...]:
    """Flat ``(obs [M, n_obs], act [M, n_act], rew [M], next_obs [M, n_obs], terminated [M])``, M = T n."""
    nxt = next_observations(batch)
    n_obs = batch["obs"].shape[-1]
    return (batch["obs"].reshape(-1, n_obs), batch["actions"].reshape(-1, batch["actions"].shape[-1]),
            batch["rewards"].reshape(-1), nxt.reshape(-1, n_obs), batch["terminated"].reshape(-1))


def offpolicy_train_until(learner: OffPolicyLearner, source, target_step: int, batch_steps: int) -> None:
    """Pull batches (``batch_steps`` per env) into the replay and update until ``env_steps >= target_step``."""
    c = learner.cfg
    while learner.env_steps < target_step:
        warmup = learner.env_steps < c.learning_starts
        source.set_policy(uniform_snapshot(learner.n_act) if warmup else tanh_gaussian_snapshot(learner))
        for batch in source.collect(batch_steps):
            obs, act, rew, nxt, term = transitions(batch)
            for k in range(obs.shape[0]):
                learner.replay.add(obs[k], act[k], float(rew[k]) * c.reward_scale, nxt[k], bool(term[k]))
                learner.pending_obs.append(obs[k])
            learner.finished_episodes.extend(batch["episodes"])
            before, learner.env_steps = learner.env_steps, learner.env_steps + obs.shape[0]
            # as the local loop: utd_ratio updates for every env step counted at or after learning_starts
            due_steps = learner.env_steps - max(before, c.learning_starts - 1)
            if due_steps > 0:
                learner.updates_due += c.utd_ratio * due_steps
                while learner.updates_due >= 1.0:
                    learner.updates_due -= 1.0
                    learner.update()
