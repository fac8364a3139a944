"""PPO gradients derived by hand (one forward and one backward pass per minibatch, no autograd) and a flat Adam.

The loss is exactly that of ``robot_rl.algos.ppo`` (``ppo_clip_loss``, ``value_loss``, ``gaussian_log_prob``,
entropy bonus of the state-independent log-std)::

    loss = ppo_clip_loss(rho, A, eps) + value_coef * value_loss(V, V_old, R, eps or None) - entropy_coef * H

only the way its gradient is computed differs. Why: a PPO minibatch of a small MLP (256 rows, 64x64) costs a few
microseconds of arithmetic per operator, and autograd's graph recording, ``AccumulateGrad``, the per-parameter
gradient-norm clip and the optimizer's Python loop cost several times that. Here the actor and critic run once
forward and once backward with every gradient written by ``out=`` straight into the parameters' ``.grad`` tensors
(views of the learner's flat gradient), so nothing is zeroed or accumulated; the global-norm clip and Adam are one
pass each over the flat vectors.

Gradients of the two ``max`` in the losses follow torch's convention (a tie sends half the gradient to each side;
the clipped side passes gradient only inside the clip range), so they equal autograd's up to float rounding, which
tests/algos/test_ppo_grads.py checks parameter by parameter. Supported hidden activations: ``FUSED_ACTIVATIONS``;
the learner uses autograd for the others.
"""

from __future__ import annotations

import math

import torch
from torch import nn

FUSED_ACTIVATIONS = ("relu", "tanh")
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
_ENTROPY_CONST = 0.5 * math.log(2 * math.pi * math.e)
STAT_NAMES = ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_frac")


def fused_supported(activation: str) -> bool:
    """Whether ``ppo_grads`` handles this hidden activation."""
    return activation in FUSED_ACTIVATIONS


def _mlp_forward(layers: list[nn.Linear], x: torch.Tensor, activation: str) -> list[torch.Tensor]:
    """Inputs of every layer plus the output: ``[x, h1, ..., out]`` (hidden ones post-activation)."""
    hs = [x]
    last = len(layers) - 1
    for i, lin in enumerate(layers):
        h = torch.addmm(lin.bias, hs[-1], lin.weight.t())
        hs.append(h if i == last else (h.clamp_min_(0.0) if activation == "relu" else h.tanh_()))
    return hs


def _act_backward(delta: torch.Tensor, h: torch.Tensor, activation: str) -> torch.Tensor:
    """``delta * act'(pre)`` given the post-activation output ``h`` (ReLU: h > 0; tanh: 1 - h^2)."""
    if activation == "relu":
        return torch.ops.aten.threshold_backward(delta, h, 0.0)
    return torch.ops.aten.tanh_backward(delta, h)


def _mlp_backward(layers: list[nn.Linear], hs: list[torch.Tensor], delta: torch.Tensor, activation: str) -> None:
    """Write weight/bias gradients of ``layers`` given ``delta`` = dL/d(output) ``[B, n_out]`` and the forward's
    layer inputs ``hs`` (``[x, h1, ...]``, hidden ones post-activation).
    """
    for i in range(len(layers) - 1, -1, -1):
        lin, x_in = layers[i], hs[i]
        torch.mm(delta.t(), x_in, out=lin.weight.grad)
        torch.sum(delta, dim=0, out=lin.bias.grad)
        if i > 0:
            delta = _act_backward(torch.mm(delta, lin.weight), x_in, activation)


def ppo_grads(actor: list[nn.Linear], critic: list[nn.Linear], log_std: nn.Parameter, activation: str,
              obs: torch.Tensor, actions: torch.Tensor, old_log_probs: torch.Tensor, old_values: torch.Tensor,
              advantages: torch.Tensor, returns: torch.Tensor, *, clip_coef: float, clip_value_loss: bool,
              value_coef: float, entropy_coef: float, normalize_advantages: bool) -> torch.Tensor:
    """Write the gradient of the PPO minibatch loss into the ``.grad`` of every actor/critic parameter and ``log_std``.

    ``actor`` / ``critic``: the Linear layers of the mean MLP (``[n_obs] -> [n_act]``) and of the value MLP
    (``[n_obs] -> [1]``). Minibatch: ``obs`` ``[B, n_obs]`` (normalized), ``actions`` ``[B, n_act]``,
    ``old_log_probs``, ``old_values``, ``advantages`` (raw: standardized here when ``normalize_advantages``),
    ``returns`` ``[B]``. Every parameter must have a ``.grad`` tensor of its shape (it is overwritten).
    Returns the statistics ``[policy_loss, value_loss, entropy, approx_kl, clip_frac]`` (``STAT_NAMES``).
    """
    with torch.no_grad():
        B = obs.shape[0]
        adv = advantages
        if normalize_advantages:
            std, mean = torch.std_mean(adv)
            adv = (adv - mean) / (std + 1e-8)
        # ---- policy: log-ratio, clipped surrogate and its gradient w.r.t. the ratio
        ha = _mlp_forward(actor, obs, activation)
        mean = ha[-1]
        inv_std = torch.exp(-log_std)
        z = (actions - mean) * inv_std  # [B, n_act] standardized action
        log_prob = torch.sum(z * z, dim=1).mul_(-0.5).sub_(log_std.sum() + _LOG_SQRT_2PI * log_std.numel())
        log_ratio = log_prob - old_log_probs
        ratio = torch.exp(log_ratio)
        s1 = -adv * ratio
        s2 = -adv * ratio.clamp(1.0 - clip_coef, 1.0 + clip_coef)
        pg_sum = torch.maximum(s1, s2).sum()
        # d pg / d ratio: -A / B where the unclipped term is the max (inside the clip range both terms are equal and
        # each gets half of it, summing to the same), 0 where the clipped (constant) term wins
        g_logp = torch.where(s1 >= s2, adv, 0.0).mul_(ratio).mul_(-1.0 / B)  # d pg / d log_prob
        # d log_prob / d mean = z / std ; d log_prob / d log_std = z^2 - 1
        _mlp_backward(actor, ha, (g_logp.unsqueeze(1) * z).mul_(inv_std), activation)
        torch.mv((z * z).sub_(1.0).t(), g_logp, out=log_std.grad)
        if entropy_coef:
            log_std.grad.sub_(entropy_coef)
        # ---- value
        hc = _mlp_forward(critic, obs, activation)
        v = hc[-1].squeeze(1)
        err = v - returns
        if clip_value_loss:
            dv_raw = v - old_values
            err_c = old_values + dv_raw.clamp(-clip_coef, clip_coef) - returns
            u, c = err * err, err_c * err_c
            vl_sum = torch.maximum(u, c).sum()
            g_c = err_c * (dv_raw.abs() <= clip_coef)  # the clamp passes gradient inside [-eps, eps] (inclusive)
            g_v = torch.where(u > c, err, torch.where(u < c, g_c, 0.5 * (err + g_c)))
        else:
            vl_sum = torch.dot(err, err)
            g_v = err
        _mlp_backward(critic, hc, g_v.mul(value_coef / B).unsqueeze(1), activation)
        # ---- statistics
        # ---- statistics: sums over the rows, divided by B once
        entropy = log_std.sum() + _ENTROPY_CONST * log_std.numel()
        kl_sum = (ratio - 1.0 - log_ratio).sum()
        clip_sum = ((ratio - 1.0).abs() > clip_coef).sum()
        return torch.stack([pg_sum, 0.5 * vl_sum, B * entropy, kl_sum, clip_sum]).div_(B)


def clip_grad_norm_flat_(grad: torch.Tensor, max_norm: float) -> torch.Tensor:
    """``nn.utils.clip_grad_norm_`` on one flat gradient ``[n]``: scale it by ``min(1, max_norm / (norm + 1e-6))``
    in place. Returns the norm before clipping (0-d).
    """
    norm = torch.linalg.vector_norm(grad)
    grad.mul_(torch.clamp(max_norm / (norm + 1e-6), max=1.0))
    return norm


class FlatAdam:
    """Adam (Kingma & Ba 2015) on one flat parameter vector with one, changeable, learning rate ``lr``.

    The update of ``torch.optim.Adam`` (no weight decay, no amsgrad): one call of torch's fused CPU Adam kernel per
    step (what ``Adam(fused=True)`` runs), or where torch lacks it a few passes over the moments.
    """

    def __init__(self, flat: torch.Tensor, grad: torch.Tensor, lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        if flat.shape != grad.shape or flat.dim() != 1:
            raise ValueError(f"FlatAdam: flat {tuple(flat.shape)} and grad {tuple(grad.shape)} must be equal 1-D")
        self.flat, self.grad, self.lr = flat, grad, float(lr)
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.m = torch.zeros_like(flat)
        self.v = torch.zeros_like(flat)
        self.t = 0
        self._fused = hasattr(torch, "_fused_adam_")
        self._step_t = torch.zeros(())

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        if self._fused:
            self._step_t.fill_(self.t)
            torch._fused_adam_([self.flat], [self.grad], [self.m], [self.v], [], [self._step_t], amsgrad=False,
                               lr=self.lr, beta1=self.beta1, beta2=self.beta2, weight_decay=0.0, eps=self.eps,
                               maximize=False)
            return
        bc1 = 1.0 - self.beta1**self.t
        bc2 = 1.0 - self.beta2**self.t
        self.m.lerp_(self.grad, 1.0 - self.beta1)
        self.v.mul_(self.beta2).addcmul_(self.grad, self.grad, value=1.0 - self.beta2)
        denom = torch.sqrt(self.v).div_(math.sqrt(bc2)).add_(self.eps)
        self.flat.addcdiv_(self.m, denom, value=-self.lr / bc1)

    def state_dict(self) -> dict:
        return {"m": self.m.clone(), "v": self.v.clone(), "t": self.t, "lr": self.lr}

    def load_state_dict(self, s: dict) -> None:
        """Load ``state_dict()``'s output, or a ``torch.optim.Adam`` state dict over the same parameters in the same
        order (checkpoints written before the flat optimizer).
        """
        if "param_groups" in s:
            states = [s["state"][k] for k in sorted(s["state"])]
            if not states:  # no step taken yet
                self.m.zero_(), self.v.zero_()
                self.t, self.lr = 0, float(s["param_groups"][0]["lr"])
                return
            m = torch.cat([st["exp_avg"].reshape(-1) for st in states])
            v = torch.cat([st["exp_avg_sq"].reshape(-1) for st in states])
            s = {"m": m, "v": v, "t": int(states[0]["step"]), "lr": s["param_groups"][0]["lr"]}
        if s["m"].shape != self.m.shape:
            raise ValueError(f"FlatAdam.load_state_dict: moments of {tuple(s['m'].shape)} elements, the parameters "
                             f"have {tuple(self.m.shape)}")
        self.m.copy_(s["m"])
        self.v.copy_(s["v"])
        self.t, self.lr = int(s["t"]), float(s["lr"])
