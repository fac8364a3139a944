"""Plain multi-layer perceptrons and the deployable policy modules built from them."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "silu": nn.SiLU, "gelu": nn.GELU}


def activation_class(name: str) -> type[nn.Module]:
    """Activation module class by name (relu, tanh, elu, silu, gelu); a ValueError names the choices."""
    try:
        return _ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(_ACTIVATIONS)}") from None


def mlp(n_in: int, n_out: int, hidden: Sequence[int], activation: str = "relu",
        output_gain: float | None = None, layer_norm: bool = False) -> nn.Sequential:
    """``Linear -> act -> ... -> Linear``. Shape: ``[B, n_in] -> [B, n_out]``.

    ``output_gain`` (optional): re-initialize the last layer orthogonally with this gain and zero bias (PPO heads use
    0.01 for the policy mean and 1.0 for the value, after Andrychowicz et al. 2020, "What matters in on-policy RL").
    ``layer_norm``: ``Linear -> act -> LayerNorm`` in every hidden layer (the value nets of OGBench's agents).
    """
    act = activation_class(activation)
    layers: list[nn.Module] = []
    last = n_in
    for width in hidden:
        layers += [nn.Linear(last, width), act()] + ([nn.LayerNorm(width)] if layer_norm else [])
        last = width
    out = nn.Linear(last, n_out)
    if output_gain is not None:
        nn.init.orthogonal_(out.weight, gain=output_gain)
        nn.init.zeros_(out.bias)
    layers.append(out)
    return nn.Sequential(*layers)


class PolicyModule(nn.Module):
    """Deployable deterministic policy: raw float32 obs ``[B, n_obs]`` -> action ``[B, n_act]`` in [-1, 1].

    ``normalizer`` (a ``RunningNormalizer`` or ``nn.Identity``) runs inside the module, so an ONNX export of this
    module carries the observation normalization. ``net`` outputs at least ``n_act`` values; the first ``n_act`` are
    the action mean (SAC's net also outputs log-stds after them). ``squash="tanh"`` (SAC) applies ``tanh``;
    ``squash="clip"`` (PPO's Gaussian, whose samples the env clips) clamps to [-1, 1].
    """

    def __init__(self, normalizer: nn.Module, net: nn.Module, n_act: int, squash: str):
        super().__init__()
        if squash not in ("tanh", "clip"):
            raise ValueError(f"squash must be 'tanh' or 'clip', got {squash!r}")
        self.normalizer = normalizer
        self.net = net
        self.n_act = int(n_act)
        self.squash = squash

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        mean = self.net(self.normalizer(obs))[..., : self.n_act]
        return torch.tanh(mean) if self.squash == "tanh" else torch.clamp(mean, -1.0, 1.0)


def length_normalize(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``x / |x| * sqrt(d)`` over the last dim (HIQL's goal representations live on this sphere)."""
    return x * torch.rsqrt(x.square().sum(-1, keepdim=True) + eps) * math.sqrt(x.shape[-1])


class HierarchicalPolicyModule(nn.Module):
    """HIQL's deployable policy, one graph: raw ``concat(observation, goal)`` ``[B, n_obs + n_goal]`` -> action in
    [-1, 1].

    ``high(norm(s, g))`` proposes the representation of a subgoal (length-normalized), ``low(norm(s), rep)`` acts
    towards it (``tanh`` mean). The input and output are those of a flat goal-conditioned ``PolicyModule``, so the
    ONNX export, the nodes and the evaluation read it without knowing it is hierarchical.
    """

    def __init__(self, normalizer: nn.Module, high: nn.Module, low: nn.Module, n_state: int, n_act: int):
        super().__init__()
        self.normalizer, self.high, self.low = normalizer, high, low
        self.n_state, self.n_act = int(n_state), int(n_act)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        z = self.normalizer(obs)
        rep = length_normalize(self.high(z))
        return torch.tanh(self.low(torch.cat([z[..., : self.n_state], rep], -1))[..., : self.n_act])
