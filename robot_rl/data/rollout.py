"""On-policy rollout storage and Generalized Advantage Estimation (PPO)."""

from __future__ import annotations

import torch


def gae(rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor, last_values: torch.Tensor,
        gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized Advantage Estimation (Schulman et al. 2016, eq. 16).

    Shapes: ``rewards``, ``values``, ``dones`` ``[T, N]``; ``last_values`` ``[N]`` = V(s_T) after the last step.
    ``dones[t] = 1`` when the episode *terminated* at step t (no bootstrap past it; time-limit truncations are
    handled by the caller adding ``gamma * V(final_obs)`` to the reward). Returns ``(advantages, returns)`` ``[T, N]``
    with ``delta_t = r_t + gamma (1 - d_t) V_{t+1} - V_t``, ``A_t = delta_t + gamma lam (1 - d_t) A_{t+1}``,
    ``returns = A + V``.
    """
    T = rewards.shape[0]
    adv = torch.zeros_like(rewards)
    next_adv = torch.zeros_like(last_values)
    next_value = last_values
    for t in range(T - 1, -1, -1):
        not_done = 1.0 - dones[t]
        delta = rewards[t] + gamma * not_done * next_value - values[t]
        next_adv = delta + gamma * lam * not_done * next_adv
        adv[t] = next_adv
        next_value = values[t]
    return adv, adv + values


class RolloutStorage:
    """Preallocated ``[T, N, ...]`` buffers for one PPO rollout of T steps from N parallel envs."""

    def __init__(self, n_steps: int, n_envs: int, n_obs: int, n_act: int):
        self.n_steps, self.n_envs = n_steps, n_envs
        self.obs = torch.zeros(n_steps, n_envs, n_obs)
        self.actions = torch.zeros(n_steps, n_envs, n_act)
        self.log_probs = torch.zeros(n_steps, n_envs)
        self.rewards = torch.zeros(n_steps, n_envs)
        self.dones = torch.zeros(n_steps, n_envs)
        self.values = torch.zeros(n_steps, n_envs)
        self.advantages = torch.zeros(n_steps, n_envs)
        self.returns = torch.zeros(n_steps, n_envs)

    def compute_returns(self, last_values: torch.Tensor, gamma: float, lam: float) -> None:
        self.advantages, self.returns = gae(self.rewards, self.values, self.dones, last_values, gamma, lam)

    def flat(self) -> dict[str, torch.Tensor]:
        """Rollout flattened to ``[T*N, ...]`` for minibatching."""
        n = self.n_steps * self.n_envs
        return {"obs": self.obs.reshape(n, -1), "actions": self.actions.reshape(n, -1),
                "log_probs": self.log_probs.reshape(n), "values": self.values.reshape(n),
                "advantages": self.advantages.reshape(n), "returns": self.returns.reshape(n)}
