"""SAC gradients derived by hand: one forward and one backward pass over actor and twin critics, no autograd.

The losses are exactly those of ``robot_rl.algos.sac`` (``soft_q_target``, ``critic_loss``, ``actor_loss``,
``temperature_loss``); only the way their gradients are computed differs. Why: on one CPU core the autograd update
of a small SAC spends most of its time in per-operator dispatch (graph recording, ``AccumulateGrad``, gradient
copies into the flat buffer, critic passes run twice). Here

* the actor runs once on ``[obs; next_obs]`` (``2B`` rows), the online critics once on
  ``[(obs, a_replay); (obs, a_pi)]`` (``2B`` rows, both members in one ``baddbmm`` per layer);
* the critic weight gradients take only the replay-action rows (the actor loss never touches critic weights,
  which autograd achieves with detached weights and SAC libraries such as SB3 compute and throw away), while the
  backpropagated signal of the policy-action rows gives ``dL/da`` for the actor;
* every gradient is written with ``out=`` straight into the parameters' ``.grad`` tensors (views into the
  learner's flat gradient), so nothing needs zeroing and nothing is accumulated.

Supported hidden activations: ``FUSED_ACTIVATIONS``; the learner falls back to autograd for the others.
tests/algos/test_sac_losses.py checks these gradients against autograd on the same batch and noise.

``CompiledSacGrads`` (opt-in, environment variable ``ROBOT_RL_SAC_COMPILE=1``) runs the same function through
``torch.compile`` (Inductor fuses the elementwise passes into a few C++ loops): about 30% less time per update on
one CPU core, for a one-off compile of 20-50 s per process and network shape (seconds once Inductor's on-disk cache
holds it). If compiling fails (no C++ compiler, unsupported torch), it warns once and runs eagerly.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from robot_rl.algos.sac import actor_loss, critic_loss, soft_q_target
from robot_rl.nets import EnsembleLinear
from robot_rl.nets.distributions import LOG_STD_MAX, LOG_STD_MIN, squash_log_std, tanh_gaussian_sample

FUSED_ACTIVATIONS = ("relu", "tanh")
_SQUASH_SLOPE = 0.5 * (LOG_STD_MAX - LOG_STD_MIN)  # d log_std / d tanh(raw)


def _act_(h: torch.Tensor, activation: str) -> torch.Tensor:
    return h.clamp_min_(0.0) if activation == "relu" else h.tanh_()


def _act_backward(delta: torch.Tensor, h: torch.Tensor, activation: str) -> torch.Tensor:
    """``delta * act'(pre)`` given the post-activation output ``h`` (ReLU: h > 0; tanh: 1 - h^2)."""
    if activation == "relu":  # autograd's ReLU backward: one fused pass, no boolean mask
        return torch.ops.aten.threshold_backward(delta, h, 0.0)
    return torch.ops.aten.tanh_backward(delta, h)


def _mlp_forward(layers: list[nn.Linear], x: torch.Tensor, activation: str) -> list[torch.Tensor]:
    """Inputs of every layer plus the output: ``[x, h1, ..., out]`` (hidden ones post-activation)."""
    hs = [x]
    for i, lin in enumerate(layers):
        h = torch.addmm(lin.bias, hs[-1], lin.weight.t())
        hs.append(_act_(h, activation) if i < len(layers) - 1 else h)
    return hs


def _ensemble_forward(layers: list[EnsembleLinear], x: torch.Tensor, activation: str) -> list[torch.Tensor]:
    """``x`` ``[B, n_in]`` shared by all members -> ``[x_expanded, h1, ..., out]``, each ``[E, B, width]``."""
    hs = [x.unsqueeze(0).expand(layers[0].n_members, -1, -1)]
    for i, lin in enumerate(layers):
        h = torch.baddbmm(lin.bias, hs[-1], lin.weight)
        hs.append(_act_(h, activation) if i < len(layers) - 1 else h)
    return hs


def sac_grads(actor: list[nn.Linear], critic: list[EnsembleLinear], target: list[EnsembleLinear],
              activation: str, log_alpha: nn.Parameter, obs2: torch.Tensor, act: torch.Tensor, rew: torch.Tensor,
              done: torch.Tensor, noise: torch.Tensor, gamma: float,
              target_entropy: float, autotune_alpha: bool) -> torch.Tensor:
    """Write the gradients of ``critic_loss + actor_loss (+ temperature_loss)`` into the parameters' ``.grad``.

    ``actor`` / ``critic`` / ``target``: the Linear layers of the actor MLP (``[obs] -> [mean, raw log-std]``), of
    the online and of the target critic ensembles. ``obs2`` ``[2B, n_obs]``: normalized ``[obs; next_obs]``; ``act``
    ``[B, n_act]``, ``rew``, ``done`` ``[B]``, ``noise`` ``[2B, n_act]`` (rows ``:B`` for the policy action at
    ``obs``, rows ``B:`` for the target action at ``next_obs``). Every parameter must have a ``.grad`` tensor
    (it is overwritten). Returns the statistics ``[critic_loss, actor_loss, alpha, entropy, mean Q]``.
    """
    with torch.no_grad():
        B, n_obs = act.shape[0], obs2.shape[1]
        obs, next_obs = obs2[:B], obs2[B:]
        n_act = act.shape[1]
        alpha = log_alpha.exp()
        # actor on [obs; next_obs]
        ha = _mlp_forward(actor, obs2, activation)
        out = ha[-1]
        mean, raw = out[:, :n_act], out[:, n_act:]
        log_std = squash_log_std(raw)
        a, logp = tanh_gaussian_sample(mean, log_std, noise)
        # soft target from the target critics at (next_obs, a')
        next_q = _ensemble_forward(target, torch.cat([next_obs, a[B:]], dim=1), activation)[-1].squeeze(-1)
        y = soft_q_target(rew, done, next_q, logp[B:], alpha, gamma)
        # online critics on [(obs, a_replay); (obs, a_pi)]
        x_pi = torch.cat([obs, a[:B]], dim=1)
        hc = _ensemble_forward(critic, torch.cat([torch.cat([obs, act], dim=1), x_pi]), activation)
        q_all = hc[-1].squeeze(-1)  # [E, 2B]
        q, q_pi = q_all[:, :B], q_all[:, B:]
        min_pi = q_pi.min(dim=0)
        loss_q = critic_loss(q, y)
        loss_pi = actor_loss(logp[:B], q_pi, alpha)

        # dL/dQ: critic loss on the replay rows, -1/B on the minimal member of the policy rows (min's gradient)
        delta = torch.zeros_like(hc[-1])
        delta[:, :B, 0] = (q - y) * (2.0 / B)
        delta[:, B:, 0].scatter_(0, min_pi.indices.unsqueeze(0), -1.0 / B)
        for i in range(len(critic) - 1, -1, -1):
            lin, x_in = critic[i], hc[i]
            torch.bmm(x_in[:, :B].transpose(1, 2), delta[:, :B], out=lin.weight.grad)
            torch.sum(delta[:, :B], dim=1, keepdim=True, out=lin.bias.grad)
            if i > 0:
                delta = _act_backward(torch.bmm(delta, lin.weight.transpose(1, 2)), x_in, activation)
        # dL/da_pi: input gradient of the policy rows, action columns, summed over members
        g_a = torch.bmm(delta[:, B:], critic[0].weight[:, n_obs:].transpose(1, 2)).sum(0)  # [B, n_act]

        # back through a = tanh(u), u = mean + exp(log_std) * noise, logp (actor loss weight alpha / B)
        a_pi, g_logp = a[:B], alpha / B
        g_u = g_a * (1.0 - a_pi.square()) + (2.0 * g_logp) * a_pi  # d logp / du = 2 tanh(u)
        g_log_std = g_u * log_std[:B].exp() * noise[:B] - g_logp
        g_raw = g_log_std * (_SQUASH_SLOPE * (1.0 - torch.tanh(raw[:B]).square()))
        delta = torch.cat([g_u, g_raw], dim=1)  # [B, 2 n_act]
        for i in range(len(actor) - 1, -1, -1):
            lin, x_in = actor[i], ha[i][:B]
            torch.mm(delta.t(), x_in, out=lin.weight.grad)
            torch.sum(delta, dim=0, out=lin.bias.grad)
            if i > 0:
                delta = _act_backward(torch.mm(delta, lin.weight), x_in, activation)

        entropy = -logp[:B].mean()
        if autotune_alpha:  # d/dlog_alpha of -(log_alpha (logp + H)).mean()
            torch.sub(entropy, target_entropy, out=log_alpha.grad)
        else:
            log_alpha.grad.zero_()
        return torch.stack([loss_q, loss_pi, alpha, entropy, q.mean()])


def fused_supported(activation: str) -> bool:
    """Whether ``sac_grads`` handles this hidden activation."""
    return activation in FUSED_ACTIVATIONS



class CompiledSacGrads:
    """``sac_grads`` through ``torch.compile`` (fixed shapes), falling back to eager ``sac_grads`` on any failure.

    Safe to retry eagerly after a failed compiled call: ``sac_grads`` overwrites every gradient it writes.
    """

    def __init__(self):
        self._fn = torch.compile(sac_grads, dynamic=False)

    @property
    def compiled(self) -> bool:
        """False once compiling has failed and calls run eagerly."""
        return self._fn is not None

    def __call__(self, *args, **kwargs) -> torch.Tensor:
        if self._fn is not None:
            try:
                return self._fn(*args, **kwargs)
            except Exception as e:  # noqa: BLE001  (any compiler/toolchain error: run eagerly instead)
                warnings.warn(f"robot_rl.algos.sac_grads: torch.compile of the SAC update failed, running eagerly "
                              f"({type(e).__name__}: {str(e)[:300]})", RuntimeWarning, stacklevel=2)
                self._fn = None
        return sac_grads(*args, **kwargs)
