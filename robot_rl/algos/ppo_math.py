"""The pure functions of PPO (``robot_rl.algos.ppo``): its losses and the numpy kernels of its rollouts.

Losses on torch tensors (clipped surrogate, optionally clipped value loss, approximate KL, the global-norm clip of
one flat gradient) and numpy stand-ins for the rollout's per-step work (the actor+critic MLP forward on views of the
live weights, GAE). Stateless and small, so they are tested one by one (tests/algos/test_ppo_losses.py) apart from
the learner that strings them together.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

# --------------------------------------------------------------------------- losses


def ppo_clip_loss(ratio: torch.Tensor, advantages: torch.Tensor, clip_coef: float) -> torch.Tensor:
    """Clipped surrogate ``-E[min(rho A, clip(rho, 1-eps, 1+eps) A)]`` (PPO eq. 7, as a loss). ``[B]`` -> scalar."""
    return torch.max(-advantages * ratio, -advantages * torch.clamp(ratio, 1.0 - clip_coef, 1.0 + clip_coef)).mean()


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
               clip_coef: float | None) -> torch.Tensor:
    """``0.5 E[(V - R)^2]``, or with ``clip_coef`` the pessimistic clipped form of Engstrom et al. 2020. ``[B]``."""
    unclipped = (values - returns).square()
    if clip_coef is None:
        return 0.5 * unclipped.mean()
    clipped = (old_values + torch.clamp(values - old_values, -clip_coef, clip_coef) - returns).square()
    return 0.5 * torch.max(unclipped, clipped).mean()


def approx_kl(log_ratio: torch.Tensor) -> torch.Tensor:
    """Low-variance estimator ``E[(rho - 1) - log rho]`` of KL(old || new) (Schulman 2020, "Approximating KL")."""
    return ((log_ratio.exp() - 1.0) - log_ratio).mean()


def clip_grad_norm_flat_(grad: torch.Tensor, max_norm: float) -> torch.Tensor:
    """``nn.utils.clip_grad_norm_`` on one flat gradient ``[n]``: scale it by ``min(1, max_norm / (norm + 1e-6))``
    in place. Returns the norm before clipping (0-d).
    """
    norm = torch.linalg.vector_norm(grad)
    grad.mul_(torch.clamp(max_norm / (norm + 1e-6), max=1.0))
    return norm


# --------------------------------------------------------------------------- numpy rollout kernels


def _np_layers(net: nn.Sequential) -> list[tuple[np.ndarray, np.ndarray]]:
    """(weight ``[out, in]``, bias ``[out]``) numpy views sharing memory with ``net``'s Linear layers."""
    return [(m.weight.detach().numpy(), m.bias.detach().numpy()) for m in net if isinstance(m, nn.Linear)]


def _np_mlp(layers: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray, activation: str) -> np.ndarray:
    """``mlp`` forward in numpy (relu, tanh or elu hidden layers). ``[B, n_in]`` float32 -> ``[B, n_out]`` float32."""
    last = len(layers) - 1
    for i, (w, b) in enumerate(layers):
        x = x @ w.T + b
        if i < last:
            if activation == "relu":
                np.maximum(x, 0.0, out=x)
            elif activation == "tanh":
                np.tanh(x, out=x)
            else:  # elu: x > 0 ? x : exp(x) - 1
                np.copyto(x, np.expm1(np.minimum(x, 0.0)), where=x < 0.0)
    return x


def gae_numpy(rewards: np.ndarray, values: np.ndarray, dones: np.ndarray, last_values: np.ndarray, gamma: float,
              lam: float) -> tuple[np.ndarray, np.ndarray]:
    """``robot_rl.data.rollout.gae`` on numpy arrays (same formula and operation order; the torch loop costs about
    six dispatches per step). ``[T, N]`` rewards, values, dones (1 = terminated), ``[N]`` last_values ->
    (advantages, returns) ``[T, N]``.
    """
    not_done = 1.0 - dones
    next_values = np.concatenate([values[1:], last_values[None]])
    delta = rewards + gamma * not_done * next_values - values
    decay = gamma * lam * not_done
    adv = np.empty_like(rewards)
    next_adv = np.zeros_like(last_values)
    for t in range(rewards.shape[0] - 1, -1, -1):
        np.multiply(decay[t], next_adv, out=adv[t])
        next_adv = np.add(delta[t], adv[t], out=adv[t])
    return adv, adv + values
