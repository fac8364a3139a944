"""Batched ensembles: E independent MLPs evaluated with one batched matmul per layer.

Used by SAC for its twin critics (E=2, one forward pass for both Q functions) and by PETS for the probabilistic
dynamics ensemble. Each member has its own weights and initialization (same scheme as ``nn.Linear``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from robot_rl.nets.mlp import activation_class


def ensemble_affine(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``x @ weight + bias`` per member: ``[E, B, n_in]`` (or ``[B, n_in]``, shared), ``[E, n_in, n_out]``,
    ``[E, 1, n_out]`` -> ``[E, B, n_out]``.

    A single output (a critic's Q value) is a multiply and a row sum: torch 2.13's CPU ``bmm`` takes a slow path
    for ``n_out == 1`` (and for its backward's ``K == 1`` / ``N == 1`` products), 75-435 us per call at B = 512 where
    the elementwise form costs 10-70 us, the same order as the rest of the layer.
    """
    if x.dim() == 2:
        x = x.unsqueeze(0).expand(weight.shape[0], -1, -1)
    if weight.shape[2] == 1:
        return (x * weight.transpose(1, 2)).sum(-1, keepdim=True) + bias
    return torch.baddbmm(bias, x, weight)


class EnsembleLinear(nn.Module):
    """E independent affine maps. Weights ``[E, n_in, n_out]``, bias ``[E, 1, n_out]``.

    ``forward``: ``[E, B, n_in] -> [E, B, n_out]`` via ``baddbmm`` (one kernel for all members; see
    ``ensemble_affine``). A ``[B, n_in]`` input is shared by all members.
    """

    def __init__(self, n_members: int, n_in: int, n_out: int):
        super().__init__()
        if n_members < 1 or n_in < 1 or n_out < 1:
            raise ValueError(f"EnsembleLinear needs positive sizes, got E={n_members}, in={n_in}, out={n_out}")
        self.n_members, self.n_in, self.n_out = n_members, n_in, n_out
        self.weight = nn.Parameter(torch.empty(n_members, n_in, n_out))
        self.bias = nn.Parameter(torch.empty(n_members, 1, n_out))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.Linear's default: kaiming_uniform(a=sqrt(5)) == U(-1/sqrt(in), 1/sqrt(in)) for weight and bias
        bound = 1.0 / math.sqrt(self.n_in)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ensemble_affine(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"n_members={self.n_members}, n_in={self.n_in}, n_out={self.n_out}"


class EnsembleLayerNorm(nn.Module):
    """Layer normalization over the last dim with each member's own scale and shift: ``[E, B, W] -> [E, B, W]``."""

    def __init__(self, n_members: int, width: int, eps: float = 1e-5):
        super().__init__()
        self.width, self.eps = width, eps
        self.weight = nn.Parameter(torch.ones(n_members, 1, width))
        self.bias = nn.Parameter(torch.zeros(n_members, 1, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.layer_norm(x, (self.width,), eps=self.eps) * self.weight + self.bias


class EnsembleMLP(nn.Module):
    """E independent MLPs ``n_in -> hidden... -> n_out``. Shape: ``[E, B, n_in]`` or ``[B, n_in]`` -> ``[E, B, n_out]``.

    ``layer_norm``: ``Linear -> act -> LayerNorm`` in every hidden layer, per member. ``member(i)`` returns a plain
    ``nn.Sequential`` copy of member i (for export or checks).
    """

    def __init__(self, n_members: int, n_in: int, n_out: int, hidden: Sequence[int], activation: str = "relu",
                 layer_norm: bool = False):
        super().__init__()
        self.n_members, self.n_in, self.n_out = n_members, n_in, n_out
        self.hidden = tuple(int(h) for h in hidden)
        self.activation = activation
        act = activation_class(activation)
        layers: list[nn.Module] = []
        last = n_in
        for width in self.hidden:
            layers += [EnsembleLinear(n_members, last, width), act()]
            if layer_norm:
                layers.append(EnsembleLayerNorm(n_members, width))
            last = width
        layers.append(EnsembleLinear(n_members, last, n_out))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def forward_frozen(self, x: torch.Tensor) -> torch.Tensor:
        """Same output as ``forward`` but with the weights detached: gradients flow to ``x`` only.

        Lets one backward pass train a critic on one loss while another loss (SAC's actor loss) differentiates
        through the same critic without touching its weight gradients.
        """
        for layer in self.net:
            if isinstance(layer, EnsembleLinear):
                x = ensemble_affine(x, layer.weight.detach(), layer.bias.detach())
            elif isinstance(layer, EnsembleLayerNorm):
                x = torch.nn.functional.layer_norm(x, (layer.width,), eps=layer.eps) * layer.weight.detach() \
                    + layer.bias.detach()
            else:
                x = layer(x)
        return x

    def member(self, i: int) -> nn.Sequential:
        """A standalone ``nn.Sequential`` with member i's weights (copied). Shape ``[B, n_in] -> [B, n_out]``."""
        if not 0 <= i < self.n_members:
            raise IndexError(f"member {i} out of range for an ensemble of {self.n_members}")
        layers: list[nn.Module] = []
        for layer in self.net:
            if isinstance(layer, EnsembleLinear):
                lin = nn.Linear(layer.n_in, layer.n_out)
                with torch.no_grad():
                    lin.weight.copy_(layer.weight[i].T)
                    lin.bias.copy_(layer.bias[i, 0])
                layers.append(lin)
            elif isinstance(layer, EnsembleLayerNorm):
                ln = nn.LayerNorm(layer.width, eps=layer.eps)
                with torch.no_grad():
                    ln.weight.copy_(layer.weight[i, 0])
                    ln.bias.copy_(layer.bias[i, 0])
                layers.append(ln)
            else:
                layers.append(activation_class(self.activation)())
        return nn.Sequential(*layers)
