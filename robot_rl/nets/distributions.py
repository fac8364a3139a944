"""Diagonal Gaussian densities: plain (PPO, IQL, GCBC) and tanh-squashed (SAC, Haarnoja et al. 2018, appendix C)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LOG_STD_MIN = -5.0
LOG_STD_MAX = 2.0
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def gaussian_log_prob(mean: torch.Tensor, log_std: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """Diagonal Gaussian log-density ``log N(action; mean, exp(log_std)^2)`` summed over action dims.

    Shapes: ``mean``, ``action`` ``[B, n_act]``; ``log_std`` ``[B, n_act]`` or ``[n_act]`` (state-independent) ->
    ``[B]``. Same argument order as ``tanh_gaussian_sample``: distribution parameters first.
    """
    z = (action - mean) * torch.exp(-log_std)
    return (-0.5 * z.square() - log_std - _HALF_LOG_2PI).sum(-1)


def squash_log_std(raw: torch.Tensor) -> torch.Tensor:
    """Map an unbounded network output to log std in ``[LOG_STD_MIN, LOG_STD_MAX]`` smoothly (CleanRL's tanh map)."""
    return LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(raw) + 1.0)


def tanh_gaussian_sample(mean: torch.Tensor, log_std: torch.Tensor,
                         noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Reparameterized sample ``a = tanh(mean + std * eps)`` and its log-density.

    Shapes: ``mean``, ``log_std``: ``[B, n_act]`` -> action ``[B, n_act]`` in (-1, 1), log_prob ``[B]``.
    ``log pi(a) = sum_i [log N(u_i; mean_i, std_i) - log(1 - tanh(u_i)^2)]`` with the numerically stable identity
    ``log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u))``.
    """
    if noise is None:
        noise = torch.randn_like(mean)
    u = mean + log_std.exp() * noise
    gauss = -0.5 * noise.square() - log_std - _HALF_LOG_2PI
    correction = 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))
    return torch.tanh(u), (gauss - correction).sum(-1)


def tanh_gaussian_deterministic(mean: torch.Tensor) -> torch.Tensor:
    """The deterministic (evaluation / deployment) action ``tanh(mean)``. Shape ``[B, n_act]``."""
    return torch.tanh(mean)
