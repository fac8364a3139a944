"""Flat parameter vectors and Adam over them, with public torch APIs only.

A learner's parameters become views into one contiguous vector and their ``.grad`` views into one contiguous
gradient (``pack_parameters``). Autograd then accumulates every gradient in place into that vector, so zeroing,
global-norm clipping, Polyak averaging and Adam are each one pass over one tensor instead of a loop over a dozen.
``flat_adam`` builds a ``torch.optim.Adam`` (``fused=True``: torch's fused CPU/GPU kernel, one call per parameter
group) whose parameter groups are contiguous slices of the flat vector, one per learning rate.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def pack_parameters(params: Sequence[nn.Parameter], with_grad: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Make ``params`` (and their ``.grad``) views into one flat parameter and one flat gradient tensor ``[n]``.

    The parameters keep their shapes and identities (modules, ``state_dict`` and ONNX export are unchanged); only
    their storage moves. Returns (flat, grad); ``grad`` is all zeros (and not attached) when ``with_grad`` is false.
    """
    n = sum(p.numel() for p in params)
    flat, grad = torch.empty(n), torch.zeros(n)
    offset = 0
    for p in params:
        k = p.numel()
        flat[offset:offset + k].copy_(p.detach().reshape(-1))
        p.data = flat[offset:offset + k].view_as(p)
        if with_grad:
            p.grad = grad[offset:offset + k].view_as(p)
        offset += k
    return flat, grad


def flat_adam(flat: torch.Tensor, grad: torch.Tensor, lr_runs: Sequence[tuple[int, int, float]],
              betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> torch.optim.Adam:
    """``torch.optim.Adam`` over slices of the flat vector ``flat`` (gradient ``grad``), one group per run.

    ``lr_runs``: ``(start, end, lr)`` slices of ``flat``, e.g. ``[(0, n_critic, 3e-4), (n_critic, n, 1e-3)]``;
    adjacent runs with equal learning rates are merged (each group costs one kernel call and ~30 us of Python per
    step). Elements outside every run are not optimized. The slices share memory with ``flat`` and ``grad``, so the
    optimizer updates the modules' parameters in place; ``param_groups[i]["lr"]`` may be changed between steps.
    Uses the fused kernel (``fused=True``) where the device supports it, the default implementation otherwise.
    """
    merged: list[list] = []
    for start, end, lr in sorted(lr_runs):
        if not 0 <= start < end <= flat.numel():
            raise ValueError(f"flat_adam: run [{start}, {end}) outside the {flat.numel()} parameters")
        if merged and merged[-1][1] > start:
            raise ValueError(f"flat_adam: runs overlap at {start}")
        if merged and merged[-1][1] == start and merged[-1][2] == float(lr):
            merged[-1][1] = end
        else:
            merged.append([start, end, float(lr)])
    groups = []
    for start, end, lr in merged:
        p = flat[start:end]
        p.grad = grad[start:end]
        groups.append({"params": [p], "lr": lr})
    fused = flat.device.type in ("cpu", "cuda")
    return torch.optim.Adam(groups, betas=betas, eps=eps, fused=fused)


def load_adam_state(opt: torch.optim.Adam, state: dict, flat: torch.Tensor) -> None:
    """Load into ``opt`` (built by ``flat_adam`` over ``flat``) what its ``state_dict()`` gave, or an older format.

    Older checkpoints: the flat ``{"m", "v", "t"(, "lr")}`` state of robot_rl's earlier hand-written Adam (moments
    over the whole flat vector, in order), or a ``torch.optim.Adam`` state over the unpacked parameters in flat
    order (their moments are concatenated).
    """
    if "param_groups" in state:
        n_params = sum(len(g["params"]) for g in state["param_groups"])
        if n_params == len(opt.param_groups):
            opt.load_state_dict(state)
            return
        states = [state["state"][k] for k in sorted(state["state"])]
        lr = float(state["param_groups"][0]["lr"])
        if not states:  # no step taken yet
            state = {"m": torch.zeros_like(flat), "v": torch.zeros_like(flat), "t": 0, "lr": lr}
        else:
            state = {"m": torch.cat([s["exp_avg"].reshape(-1) for s in states]),
                     "v": torch.cat([s["exp_avg_sq"].reshape(-1) for s in states]),
                     "t": int(states[0]["step"]), "lr": lr}
    if state["m"].numel() != flat.numel():
        raise ValueError(f"load_adam_state: moments of {state['m'].numel()} elements, the parameters have "
                         f"{flat.numel()}")
    new = {"state": {}, "param_groups": opt.state_dict()["param_groups"]}
    for i, group in enumerate(opt.param_groups):
        p = group["params"][0]
        start = (p.data_ptr() - flat.data_ptr()) // flat.element_size()
        rows = slice(start, start + p.numel())
        if int(state["t"]) > 0:
            new["state"][i] = {"step": torch.tensor(float(state["t"])), "exp_avg": state["m"][rows].clone(),
                               "exp_avg_sq": state["v"][rows].clone()}
        if "lr" in state:
            new["param_groups"][i]["lr"] = float(state["lr"])
    opt.load_state_dict(new)
