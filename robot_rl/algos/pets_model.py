"""The PETS dynamics model: a probabilistic ensemble of Gaussian delta models, its losses, its fit and the
trajectory-sampling predictor.

``ProbabilisticEnsemble`` (torch), ``fit`` / ``fit_epochs`` (bootstrap minibatches, or epochs with held-out early
stopping) and ``make_predictor`` (``ts1`` / ``tsinf`` particles for ``LearnedDynamics``). Apart from the loop in
``robot_rl.algos.pets`` because the exported artifact (``robot_rl.train.pets_artifact``) and the benches need the
model without the training loop; see ``robot_rl.algos.pets`` for the method.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robot_rl.algos.pets_config import PetsConfig
from robot_rl.control.ensemble_cem import EnsembleParams
from robot_rl.nets.ensemble import EnsembleLinear, EnsembleMLP

# --------------------------------------------------------------------------- losses (pure functions)


def soft_clamp_logvar(raw: torch.Tensor, min_logvar: torch.Tensor, max_logvar: torch.Tensor) -> torch.Tensor:
    """Smoothly bound a log-variance between ``min_logvar`` and ``max_logvar`` (PETS appendix; MBRL-Lib)."""
    lv = max_logvar - F.softplus(max_logvar - raw)
    return min_logvar + F.softplus(lv - min_logvar)


def gaussian_nll(mean: torch.Tensor, logvar: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over everything of ``1/2 [(target - mean)^2 exp(-logvar) + logvar]`` (constant dropped)."""
    return 0.5 * ((target - mean) ** 2 * torch.exp(-logvar) + logvar).mean()


# --------------------------------------------------------------------------- model


class ProbabilisticEnsemble(nn.Module):
    """Ensemble of Gaussian delta models with input/output normalization. Shapes: state ``[.., nx]``, ``[.., nu]``."""

    def __init__(self, nx: int, nu: int, angle_indices, n_members: int, hidden, activation: str):
        super().__init__()
        self.nx, self.nu, self.n_members = nx, nu, n_members
        self.angles = list(angle_indices)
        self.others = [i for i in range(nx) if i not in self.angles]
        n_in = len(self.others) + 2 * len(self.angles) + nu
        self.net = EnsembleMLP(n_members, n_in, 2 * nx, hidden, activation)
        self.min_logvar = nn.Parameter(-10.0 * torch.ones(nx))
        self.max_logvar = nn.Parameter(0.5 * torch.ones(nx))
        for name, n in (("in_mean", n_in), ("in_std", n_in), ("out_mean", nx), ("out_std", nx)):
            self.register_buffer(name, torch.zeros(n) if "mean" in name else torch.ones(n))

    def features(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        a = x[..., self.angles]
        return torch.cat([x[..., self.others], torch.cos(a), torch.sin(a), u], dim=-1)

    def fit_normalizers(self, X: torch.Tensor, U: torch.Tensor, X_next: torch.Tensor) -> None:
        f, d = self.features(X, U), X_next - X
        self.in_mean.copy_(f.mean(0))
        self.in_std.copy_(f.std(0).clamp_min(1e-6))
        self.out_mean.copy_(d.mean(0))
        self.out_std.copy_(d.std(0).clamp_min(1e-6))

    def forward(self, x: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [E, B, nx]``, ``u [E, B, nu]`` -> normalized delta mean and soft-clamped log-variance ``[E, B, nx]``."""
        out = self.net((self.features(x, u) - self.in_mean) / self.in_std)
        mean, raw = out[..., : self.nx], out[..., self.nx:]
        return mean, soft_clamp_logvar(raw, self.min_logvar, self.max_logvar)

    def loss(self, x, u, x_next) -> torch.Tensor:
        """Gaussian NLL of the normalized delta plus the log-variance bound penalty (weight applied by caller)."""
        mean, logvar = self(x, u)
        return gaussian_nll(mean, logvar, (x_next - x - self.out_mean) / self.out_std)

    @torch.no_grad()
    def sample_next(self, x: torch.Tensor, u: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Sample ``x' [E, B, nx]`` (member e on row block e)."""
        mean, logvar = self(x, u)
        eps = torch.randn(mean.shape, generator=gen, dtype=mean.dtype)
        return x + self.out_mean + self.out_std * (mean + torch.exp(0.5 * logvar) * eps)

    @torch.no_grad()
    def numpy_params(self) -> EnsembleParams:
        """The weights as float32 numpy (``robot_rl.control.ensemble_cem``: torch-free forward and CEM planner)."""
        lin = [m for m in self.net.net if isinstance(m, EnsembleLinear)]

        def f32(t):
            return t.detach().cpu().numpy().astype(np.float32).copy()

        return EnsembleParams(weights=tuple(f32(m.weight) for m in lin), biases=tuple(f32(m.bias) for m in lin),
                              activation=self.net.activation, angle_indices=tuple(self.angles), nx=self.nx,
                              nu=self.nu, in_mean=f32(self.in_mean), in_std=f32(self.in_std),
                              out_mean=f32(self.out_mean), out_std=f32(self.out_std),
                              min_logvar=f32(self.min_logvar), max_logvar=f32(self.max_logvar))

    @torch.no_grad()
    def disagreement(self, x: np.ndarray, u: np.ndarray) -> float:
        """Epistemic disagreement at one (x, u): variance over members of the mean delta, averaged over dims."""
        xt = torch.as_tensor(x, dtype=torch.float32).expand(self.n_members, 1, -1)
        ut = torch.as_tensor(u, dtype=torch.float32).expand(self.n_members, 1, -1)
        mean, _ = self(xt, ut)
        return float(mean.var(dim=0).mean())


def fit(model: ProbabilisticEnsemble, data: dict[str, np.ndarray], cfg: PetsConfig, opt: torch.optim.Optimizer,
        gen: torch.Generator) -> float:
    """Refit on the transitions ``data`` (``x [N, nx]``, ``u [N, nu]``, ``x_next [N, nx]``): ``cfg.train_steps``
    bootstrap minibatch steps per member, or with ``cfg.train_epochs > 0`` epochs with held-out early stopping
    (:func:`fit_epochs`). Returns the last training loss.
    """
    X, U, Xn = (torch.as_tensor(data[k], dtype=torch.float32) for k in ("x", "u", "x_next"))
    model.fit_normalizers(X, U, Xn)
    if cfg.train_epochs > 0:
        return fit_epochs(model, X, U, Xn, cfg, opt, gen)
    n, E = len(X), model.n_members
    loss = torch.zeros(())
    for _ in range(cfg.train_steps):
        idx = torch.randint(0, n, (E, min(cfg.batch_size, n)), generator=gen)  # with replacement: bootstrap
        loss = _step(model, X[idx], U[idx], Xn[idx], cfg, opt)
    return float(loss.detach())


def _step(model: ProbabilisticEnsemble, x, u, x_next, cfg: PetsConfig, opt: torch.optim.Optimizer) -> torch.Tensor:
    """One Adam step on member-stacked minibatches ``[E, B, ..]``: NLL plus the log-variance bound penalty."""
    loss = model.loss(x, u, x_next) + cfg.logvar_bounds_weight * (model.max_logvar.sum() - model.min_logvar.sum())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss


def fit_epochs(model: ProbabilisticEnsemble, X: torch.Tensor, U: torch.Tensor, Xn: torch.Tensor, cfg: PetsConfig,
               opt: torch.optim.Optimizer, gen: torch.Generator) -> float:
    """Epoch training with early stopping (``PetsConfig.train_epochs``): a random ``holdout_fraction`` of the
    transitions is held out; each member trains on its own bootstrap resample of the rest; after every epoch the
    per-member MSE of the normalized mean delta on the held-out set decides which members improved (their weights
    are snapshot). Stops after ``patience`` epochs without any improvement; restores every member's best weights.
    Returns the last training loss.
    """
    n, E = len(X), model.n_members
    n_hold = max(1, int(round(cfg.holdout_fraction * n))) if n > 1 else 0
    perm = torch.randperm(n, generator=gen)
    hold, train = perm[:n_hold], perm[n_hold:]
    boot = train[torch.randint(0, len(train), (E, len(train)), generator=gen)]  # [E, n_train], with replacement
    members = [p for p in model.net.parameters() if p.dim() >= 1 and p.shape[0] == E]
    best_w = [p.detach().clone() for p in members]
    with torch.no_grad():
        best = _holdout_mse(model, X, U, Xn, hold)
    since, loss, B = 0, torch.zeros(()), min(cfg.batch_size, len(train))
    for _ in range(cfg.train_epochs):
        order = torch.gather(boot, 1, torch.argsort(torch.rand(boot.shape, generator=gen), dim=1))
        for i in range(0, len(train) - B + 1, B):
            idx = order[:, i:i + B]
            loss = _step(model, X[idx], U[idx], Xn[idx], cfg, opt)
        if n_hold == 0:  # a single transition: nothing to hold out, no early stopping
            continue
        with torch.no_grad():
            mse = _holdout_mse(model, X, U, Xn, hold)
            better = mse < best
            if bool(better.any()):
                for p, b in zip(members, best_w):
                    b[better] = p[better]
                best = torch.where(better, mse, best)
                since = 0
            else:
                since += 1
        if since >= cfg.patience:
            break
    if n_hold:
        with torch.no_grad():
            for p, b in zip(members, best_w):
                p.copy_(b)
    return float(loss.detach())


def _holdout_mse(model: ProbabilisticEnsemble, X, U, Xn, hold: torch.Tensor) -> torch.Tensor:
    """Per-member MSE ``[E]`` of the normalized mean delta on the rows ``hold``."""
    x, u, xn = X[hold], U[hold], Xn[hold]
    E = model.n_members
    mean, _ = model(x.expand(E, -1, -1), u.expand(E, -1, -1))
    return ((mean - (xn - x - model.out_mean) / model.out_std) ** 2).mean(dim=(1, 2))


def make_predictor(model: ProbabilisticEnsemble, propagation: str, gen: torch.Generator):
    """Numpy particle predictor ``[P, N, nx], [P, N, nu] -> [P, N, nx]`` for ``LearnedDynamics``."""
    E = model.n_members

    def predict(X: np.ndarray, U: np.ndarray) -> np.ndarray:
        P, N, nx = X.shape
        x = torch.as_tensor(X, dtype=torch.float32).reshape(P * N, nx)
        u = torch.as_tensor(np.array(np.broadcast_to(U, (P, N, U.shape[-1])), dtype=np.float32),
                            dtype=torch.float32).reshape(P * N, -1)
        if propagation == "tsinf" and P % E == 0:
            # particle p -> member p mod E: rows [p, n] with p = k E + e land in block e
            xb = x.reshape(P // E, E, N, nx).transpose(0, 1).reshape(E, -1, nx)
            ub = u.reshape(P // E, E, N, -1).transpose(0, 1).reshape(E, (P // E) * N, -1)
            out = model.sample_next(xb, ub, gen).reshape(E, P // E, N, nx).transpose(0, 1).reshape(P, N, nx)
            return out.numpy().astype(np.float64)
        # ts1 (or particles not divisible by E): a fresh random member per row and step
        rows = P * N
        perm = torch.randperm(rows, generator=gen)
        pad = (-rows) % E
        idx = torch.cat([perm, perm[:pad]])
        out = model.sample_next(x[idx].reshape(E, -1, nx), u[idx].reshape(E, -1, u.shape[-1]), gen).reshape(-1, nx)
        res = torch.empty_like(x)
        res[idx[:rows]] = out[:rows]
        return res.reshape(P, N, nx).numpy().astype(np.float64)

    return predict

