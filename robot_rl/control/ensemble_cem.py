"""CEM planning on a probabilistic dynamics ensemble with a lean float32 numpy forward (no torch; robot side).

PETS (Chua et al. 2018) plans with CEM over trajectories sampled through a learned ensemble. This module does the
whole replan in numpy with preallocated buffers and no per-sample Python work:

* :class:`EnsembleParams`: the weights of an ensemble of ``E`` Gaussian delta models, the same math as
  ``robot_rl.algos.pets.ProbabilisticEnsemble`` (inputs ``[x_others, cos x_angles, sin x_angles, u]`` normalized,
  MLP per member, output ``[mean, raw logvar]`` of the normalized delta, log-variance soft-clamped). Built from the
  torch model by ``ProbabilisticEnsemble.numpy_params()`` (training side) or loaded from an ``.npz``
  (``save`` / ``load``). :meth:`EnsembleParams.compile` folds the input normalization and the ``silu`` pre-scaling
  into the weights (``silu(z) = h (1 + tanh h)`` with ``h = z / 2``), float32.
* :class:`EnsembleCEM`: an MPC planner (``optimize(x0, U0, deadline) -> Solution``, drop-in for
  ``robot_rl.control.mpc.SamplingPlanner`` in ``MPCController``). Each CEM iteration rolls all ``num_samples``
  control sequences x ``n_particles`` particles through the ensemble in ``T`` batched forwards, scores them with a
  vectorized form of the planner cost (:class:`RolloutCost`, equal to ``Cost.total``) averaged over particles
  (expected cost) and refits mean / std to the elites. Trajectory sampling (``propagation``):

  - ``ts1``: at every step each row (sample x particle) is sent to a random member (a fresh balanced random
    assignment per step); with ``n_particles = 1`` that is one row per sample, the cheapest option (TS-1 with one
    particle: the member and aleatoric noise still vary along the trajectory, the expected cost is one draw).
  - ``tsinf``: each particle keeps one member for the whole horizon (``n_particles / E`` particles per member;
    ``n_particles`` a multiple of ``E``).

  The aleatoric noise and the TS-1 member assignment are drawn once per replan and shared by its CEM iterations
  (common random numbers: sequences of different iterations are compared under the same model draws, and the
  random draws cost once instead of once per iteration). The returned plan (``EnsembleCEMSettings.plan``) is the
  best sequence evaluated (``best``; the current mean is a candidate of every iteration) or the CEM mean after the
  last elite refit (``mean``, as PETS); ``X`` is the particle-mean trajectory of the best sequence. Warm start: the
  controller shifts the previous plan (``U0``); the CEM std is kept between calls and re-inflated to at least half
  of ``noise_std`` (as ``robot_rl.control.sampling.solve``).

Shapes: state ``[nx]``, controls ``[T, nu]`` in actuator units, limits ``u_min`` / ``u_max`` ``[nu]``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from robot_rl.control.costs import Cost, _residual
from robot_rl.control.ilqr import Solution
from robot_rl.control.sampling import SamplingSettings, initial_distribution

ACTIVATIONS = ("silu", "relu", "tanh")
"""Hidden activations the numpy forward implements."""


def _softplus(x: np.ndarray) -> np.ndarray:
    """``log(1 + exp(x))`` without overflow: ``max(x, 0) + log1p(exp(-|x|))``."""
    y = np.abs(x)
    np.negative(y, out=y)
    np.exp(y, out=y)
    np.log1p(y, out=y)
    y += np.maximum(x, 0.0)
    return y


@dataclass(frozen=True)
class EnsembleParams:
    """Weights of an ensemble of Gaussian delta models (float32 numpy).

    ``weights[l] [E, n_in_l, n_out_l]``, ``biases[l] [E, 1, n_out_l]`` (last layer ``n_out = 2 nx``: mean, raw
    log-variance of the normalized delta); ``in_mean`` / ``in_std`` ``[n_in]`` over ``[x_others, cos, sin, u]``;
    ``out_mean`` / ``out_std`` ``[nx]`` (state units) denormalize the delta; ``min_logvar`` / ``max_logvar`` ``[nx]``.
    """

    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    activation: str
    angle_indices: tuple[int, ...]
    nx: int
    nu: int
    in_mean: np.ndarray
    in_std: np.ndarray
    out_mean: np.ndarray
    out_std: np.ndarray
    min_logvar: np.ndarray
    max_logvar: np.ndarray

    def __post_init__(self):
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"EnsembleParams: activation {self.activation!r} not in {ACTIVATIONS}")
        n_in = self.nx + len(self.angle_indices) + self.nu
        if not self.weights or len(self.weights) != len(self.biases):
            raise ValueError("EnsembleParams: need one bias per weight matrix and at least one layer")
        if self.weights[0].shape[1] != n_in or self.weights[-1].shape[2] != 2 * self.nx:
            raise ValueError(f"EnsembleParams: first layer must take {n_in} inputs and the last give {2 * self.nx} "
                             f"outputs, got {self.weights[0].shape} / {self.weights[-1].shape}")
        for name, n in (("in_mean", n_in), ("in_std", n_in), ("out_mean", self.nx), ("out_std", self.nx),
                        ("min_logvar", self.nx), ("max_logvar", self.nx)):
            if np.shape(getattr(self, name)) != (n,):
                raise ValueError(f"EnsembleParams: {name} must have shape ({n},), got {np.shape(getattr(self, name))}")

    @property
    def n_members(self) -> int:
        return int(self.weights[0].shape[0])

    def save(self, path: str | Path) -> None:
        """Write an ``.npz`` readable by :meth:`load`."""
        arrays = {f"w{i}": w for i, w in enumerate(self.weights)} | {f"b{i}": b for i, b in enumerate(self.biases)}
        np.savez(path, **arrays, activation=np.array(self.activation), angle_indices=np.asarray(self.angle_indices,
                 dtype=np.int64), nx=self.nx, nu=self.nu, in_mean=self.in_mean, in_std=self.in_std,
                 out_mean=self.out_mean, out_std=self.out_std, min_logvar=self.min_logvar, max_logvar=self.max_logvar)

    @classmethod
    def load(cls, path: str | Path) -> EnsembleParams:
        """Read an ``.npz`` written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as z:
            n = sum(1 for k in z.files if k.startswith("w") and k[1:].isdigit())
            if n == 0:
                raise ValueError(f"{path}: no ensemble weights (w0, w1, ...) in the file")
            f32 = {k: np.asarray(z[k], np.float32) for k in ("in_mean", "in_std", "out_mean", "out_std",
                                                              "min_logvar", "max_logvar")}
            return cls(weights=tuple(np.asarray(z[f"w{i}"], np.float32) for i in range(n)),
                       biases=tuple(np.asarray(z[f"b{i}"], np.float32) for i in range(n)),
                       activation=str(z["activation"]), angle_indices=tuple(int(i) for i in z["angle_indices"]),
                       nx=int(z["nx"]), nu=int(z["nu"]), **f32)

    def compile(self) -> CompiledEnsemble:
        return CompiledEnsemble(self)


class CompiledEnsemble:
    """Float32 forward of :class:`EnsembleParams` with normalization folded into the first layer.

    ``sample_next(X [E, B, nx], U [E, B, nu], eps [E, B, nx]) -> X' [E, B, nx]``: member e on row block e; ``eps``
    standard normal (aleatoric noise; zeros = member means).
    """

    def __init__(self, p: EnsembleParams):
        self.p, self.nx, self.nu, self.n_members = p, p.nx, p.nu, p.n_members
        self.angles = list(p.angle_indices)
        self.others = [i for i in range(p.nx) if i not in self.angles]
        inv = 1.0 / p.in_std.astype(np.float64)
        W = [w.astype(np.float64) for w in p.weights]
        b = [v.astype(np.float64) for v in p.biases]
        # (f - m) / s @ W + b = f @ (W / s) + (b - (m / s) @ W)
        b[0] = b[0] - np.einsum("i,eio->eo", p.in_mean * inv, W[0])[:, None, :]
        W[0] = W[0] * inv[None, :, None]
        # the forward feeds [x (all nx), cos x_angles, sin x_angles, u]: raw angle entries get zero weight rows
        na, E = len(self.angles), p.n_members
        W0 = np.zeros((E, p.nx + 2 * na + p.nu, W[0].shape[2]))
        W0[:, self.others] = W[0][:, :len(self.others)]
        W0[:, p.nx:] = W[0][:, len(self.others):]
        W[0] = W0
        self.silu = p.activation == "silu"
        for i in range(len(W) - 1):  # silu(z) = h (1 + tanh h), h = z / 2: the hidden pre-activations come halved
            if self.silu:
                W[i], b[i] = 0.5 * W[i], 0.5 * b[i]
        self.W = [np.ascontiguousarray(w, np.float32) for w in W]
        self.b = [np.ascontiguousarray(v, np.float32) for v in b]
        self.out_mean, self.out_std = p.out_mean.astype(np.float32), p.out_std.astype(np.float32)
        self.min_lv, self.max_lv = p.min_logvar.astype(np.float32), p.max_logvar.astype(np.float32)
        self._bufs: dict[int, list[np.ndarray]] = {}

    def _buffers(self, B: int) -> list[np.ndarray]:
        if B not in self._bufs:
            E = self.n_members
            self._bufs[B] = ([np.empty((E, B, self.W[0].shape[1]), np.float32)]
                             + [np.empty((E, B, w.shape[2]), np.float32) for w in self.W]
                             + [np.empty((E, B, w.shape[2]), np.float32) for w in self.W[:-1]])
        return self._bufs[B]

    def forward(self, X: np.ndarray, U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normalized delta mean and soft-clamped log-variance ``[E, B, nx]`` (views of internal buffers)."""
        B = X.shape[1]
        bufs = self._buffers(B)
        n_layers = len(self.W)
        f, outs, tmps = bufs[0], bufs[1:1 + n_layers], bufs[1 + n_layers:]
        nx, na = self.nx, len(self.angles)
        f[..., :nx] = X
        for j, i in enumerate(self.angles):
            np.cos(X[..., i:i + 1], out=f[..., nx + j:nx + j + 1])
            np.sin(X[..., i:i + 1], out=f[..., nx + na + j:nx + na + j + 1])
        f[..., nx + 2 * na:] = U
        h = f
        for i in range(n_layers):
            out = outs[i]
            np.matmul(h, self.W[i], out=out)
            out += self.b[i]
            if i < n_layers - 1:
                if self.silu:
                    t = tmps[i]
                    np.tanh(out, out=t)
                    t += 1.0
                    out *= t
                elif self.p.activation == "relu":
                    np.maximum(out, 0.0, out=out)
                else:
                    np.tanh(out, out=out)
            h = out
        mean, raw = h[..., :self.nx], h[..., self.nx:]
        lv = self.max_lv - _softplus(self.max_lv - raw)
        return mean, self.min_lv + _softplus(lv - self.min_lv)

    def sample_next(self, X: np.ndarray, U: np.ndarray, eps: np.ndarray | None) -> np.ndarray:
        mean, logvar = self.forward(X, U)
        d = mean if eps is None else mean + np.exp(0.5 * logvar) * eps
        return X + self.out_mean + self.out_std * d


class RolloutCost:
    """``Cost.total`` for many trajectories at once, without Jacobians: ``X [T+1, R, nx]`` (time first, float32 or
    float64), ``U [N, T, nu]`` and ``rows_per_sample`` -> cost per row ``[R]`` (row ``r`` uses ``U[r % N]``);
    ``inf`` where a trajectory is non-finite.
    """

    def __init__(self, cost: Cost):
        self.cost = cost
        self.terms = list(cost.config.terms)
        unsupported = [t.name for t in self.terms if t.kind in ("site_position", "servo_error")]
        if unsupported:
            raise ValueError(f"cost {cost.config.name!r}: terms {unsupported} (site_position / servo_error) are not "
                             "supported by the learned-model planner's rollout cost")

    def __call__(self, X: np.ndarray, U: np.ndarray) -> np.ndarray:
        T1, R, _ = X.shape
        N = U.shape[0]
        c = np.zeros(R)
        wt = np.empty(T1)
        with np.errstate(invalid="ignore", over="ignore"):
            for t in self.terms:
                if t.kind == "control":
                    r, _ = _residual(t, U, self.cost.nu)
                    c += np.tile(t.weight * 0.5 * np.einsum("ntm,ntm->n", r, r), R // N)
                    continue
                wt[:-1], wt[-1] = t.weight, t.terminal_weight
                if t.kind == "angle":
                    q0 = t.target[0] if t.target else 0.0
                    sq = 1.0 - np.cos(X[..., t.indices[0]] - q0)  # = 1/2 |[cos q - cos q0, sin q - sin q0]|^2
                elif t.kind == "state":
                    d = X[..., list(t.indices)] - (np.asarray(t.target, np.float32) if t.target else 0.0)
                    sq = 0.5 * np.einsum("trm,trm->tr", d, d)
                elif t.kind == "limit":  # the overshoot beyond [lower, upper]: Cost's own residual
                    r, _ = self.cost._extra_residual(t, X.astype(float), None, jacobian=False)
                    sq = 0.5 * np.sum(r * r, axis=-1)
                else:
                    r, _ = _residual(t, X.astype(float), self.cost.nx)
                    sq = 0.5 * np.sum(r * r, axis=-1)
                c += wt @ sq
            bad = ~np.isfinite(c) | ~np.isfinite(X).all(axis=(0, 2))
        c[bad] = np.inf
        return c


@dataclass(frozen=True)
class EnsembleCEMSettings:
    """Settings of :class:`EnsembleCEM` (CEM parameters as in ``SamplingSettings``; ``method`` must be ``cem``)."""

    cem: SamplingSettings
    """Samples, iterations, elites, noise / min std, smoothing, time budget."""
    propagation: Literal["ts1", "tsinf"] = "ts1"
    """Trajectory sampling (module docstring)."""
    n_particles: int = 1
    """Particles per control sequence (a multiple of the member count for tsinf)."""
    prev_action: bool = False
    """The model's action input is ``[u_prev, u]`` (``2 nu`` entries: the previously applied command, then this
    step's): it can represent a 0-1 step actuation latency. Rollouts feed ``U[t-1]`` (``last_action`` at t = 0)."""
    plan: Literal["best", "mean"] = "best"
    """Returned plan: ``best`` = the lowest-cost sequence evaluated; ``mean`` = the CEM mean after the last
    iteration's elite refit (PETS; with few particles the best single sequence is biased towards lucky model
    draws, the elite mean averages them out)."""


class EnsembleCEM:
    """CEM over an ensemble (module docstring): ``optimize(x0 [nx], U0 [T, nu], deadline) -> Solution``.

    ``dynamics``-like attributes for ``MPCController``: ``nx``, ``nu``, ``dt`` [s], ``u_min``, ``u_max`` and
    ``step(x, u)`` (member-mean one-step prediction, used for delay compensation).
    """

    def __init__(self, params: EnsembleParams, cost: Cost, settings: EnsembleCEMSettings, *, dt: float,
                 u_min, u_max, rng: np.random.Generator | None = None):
        s = settings
        if s.cem.method != "cem":
            raise ValueError(f"EnsembleCEM runs CEM only, got method {s.cem.method!r}")
        E = params.n_members
        if s.n_particles < 1 or (s.propagation == "tsinf" and s.n_particles % E):
            raise ValueError(f"EnsembleCEM: tsinf needs n_particles ({s.n_particles}) to be a positive multiple of "
                             f"the member count ({E})")
        if s.plan not in ("best", "mean"):
            raise ValueError(f"EnsembleCEM: plan must be 'best' or 'mean', got {s.plan!r}")
        nu = params.nu // 2 if s.prev_action else params.nu
        if s.prev_action and params.nu % 2:
            raise ValueError(f"EnsembleCEM: prev_action needs an ensemble action input of 2 nu entries, got "
                             f"{params.nu}")
        if cost.nx != params.nx or cost.nu != nu:
            raise ValueError(f"EnsembleCEM: cost is for nx={cost.nx}, nu={cost.nu}; ensemble has nx={params.nx}, "
                             f"nu={nu}")
        self.model, self.cost, self.settings = params.compile(), RolloutCost(cost), settings
        self.nx, self.nu, self.dt = params.nx, nu, float(dt)
        self.last_action = np.zeros(nu)
        """Command applied just before the state given to ``optimize`` (prev_action models; the caller sets it)."""
        self.u_min = np.broadcast_to(np.asarray(u_min, float), (self.nu,)).copy()
        self.u_max = np.broadcast_to(np.asarray(u_max, float), (self.nu,)).copy()
        self.rng = np.random.default_rng(0) if rng is None else rng
        self.dynamics = self  # MPCController reads planner.dynamics for limits, dt and delay prediction
        self._std: np.ndarray | None = None

    # ---- one-step prediction (delay compensation, checks)
    def step(self, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Member-mean next state ``[nx]`` (no noise; prev_action models use ``last_action`` as the previous one)."""
        E = self.model.n_members
        X = np.broadcast_to(np.asarray(x, np.float32), (E, 1, self.nx))
        u = np.clip(np.asarray(u, float), self.u_min, self.u_max)
        if self.settings.prev_action:
            u = np.concatenate([self.last_action, u])
        U = np.broadcast_to(u.astype(np.float32), (E, 1, self.model.nu))
        return self.model.sample_next(X, U, None).mean(axis=(0, 1)).astype(float)

    # ---- rollout
    def _draws(self, T: int, R: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Noise ``[T, E, R/E, nx]`` and, for ts1, one row permutation per step ``[T, R]``."""
        E = self.model.n_members
        eps = self.rng.standard_normal((T, E, R // E, self.nx), dtype=np.float32)
        if self.settings.propagation == "tsinf":
            return eps, None
        return eps, self.rng.permuted(np.broadcast_to(np.arange(R), (T, R)), axis=1)

    def rollout(self, x0: np.ndarray, U: np.ndarray, eps: np.ndarray, perm: np.ndarray | None) -> np.ndarray:
        """States ``[T+1, R, nx]`` float32 of ``R = P N`` rows (row ``p N + n``: particle p of sample ``U[n]``;
        tsinf: particle p uses member ``p // (P / E)``, so member e owns one contiguous block of rows).
        """
        N, T, _ = U.shape
        E, nu = self.model.n_members, self.model.nu
        R = self.settings.n_particles * N
        X = np.empty((T + 1, R, self.nx), np.float32)
        X[0] = x0
        Uin = U.astype(np.float32).transpose(1, 0, 2)  # [T, N, nu_model]
        if self.settings.prev_action:
            prev = np.concatenate([np.broadcast_to(self.last_action.astype(np.float32), (1, N, self.nu)), Uin[:-1]])
            Uin = np.concatenate([prev, Uin], axis=-1)
        Ur = np.broadcast_to(Uin[:, None], (T, R // N, N, nu)).reshape(T, R, nu)
        if perm is None:
            for t in range(T):
                X[t + 1] = self.model.sample_next(X[t].reshape(E, R // E, self.nx), Ur[t].reshape(E, R // E, nu),
                                                  eps[t]).reshape(R, self.nx)
            return X
        for t in range(T):
            idx = perm[t]
            nxt = self.model.sample_next(X[t][idx].reshape(E, R // E, self.nx), Ur[t][idx].reshape(E, R // E, nu),
                                         eps[t])
            X[t + 1][idx] = nxt.reshape(R, self.nx)
        return X

    def score(self, x0: np.ndarray, U: np.ndarray, eps: np.ndarray, perm: np.ndarray | None
              ) -> tuple[np.ndarray, np.ndarray]:
        """Expected cost per sequence ``[N]`` (mean over particles; ``inf`` if any particle diverged) and the states
        ``[T+1, P, N, nx]``.
        """
        N = U.shape[0]
        X = self.rollout(x0, U, eps, perm)
        c = self.cost(X, U).reshape(-1, N).mean(axis=0)
        return c, X.reshape(X.shape[0], -1, N, self.nx)

    # ---- planner
    def optimize(self, x0: np.ndarray, U0: np.ndarray, deadline: float, X_ref=None, K0=None) -> Solution:
        """One CEM solve from ``x0 [nx]`` warm-started at ``U0 [T, nu]``; stops after an iteration once
        ``time.perf_counter() >= deadline``.
        """
        t_start = time.perf_counter()
        s = self.settings.cem
        lo, hi = self.u_min, self.u_max
        x0, mean, std, scale = initial_distribution(x0, U0, lo, hi, self.nx, self.nu, s.noise_std, self._std,
                                                    "EnsembleCEM.optimize")
        T, nu = mean.shape
        n, E = s.num_samples, self.model.n_members
        R = self.settings.n_particles * n
        if R % E:
            raise ValueError(f"EnsembleCEM: num_samples x n_particles ({R}) must be a multiple of the member count "
                             f"({E})")
        eps, perm = self._draws(T, R)
        best_U, best_c, best_X, history, it = mean, np.inf, None, [], 0
        for it in range(1, s.iterations + 1):  # noqa: B007 (reported)
            noise = self.rng.standard_normal((n, T, nu)) * std
            noise[0] = 0.0  # the current mean is a candidate
            U = np.clip(mean[None] + noise, lo, hi)
            c, X = self.score(x0, U, eps, perm)
            i_best = int(np.argmin(c))
            if c[i_best] < best_c:
                best_c, best_U, best_X = float(c[i_best]), U[i_best], X[:, :, i_best]
            history.append(best_c)
            finite = np.isfinite(c)
            if finite.sum() >= s.num_elites:
                elites = U[np.argpartition(c, s.num_elites - 1)[:s.num_elites]]
                a = s.smoothing
                mean = a * mean + (1 - a) * elites.mean(axis=0)
                std = np.maximum(a * std + (1 - a) * elites.std(axis=0), s.min_std * scale)
            if time.perf_counter() >= deadline:
                break
        self._std = std
        if self.settings.plan == "mean":
            best_U = np.clip(mean, lo, hi)
        X_plan = (np.repeat(x0[None], T + 1, axis=0) if best_X is None
                  else best_X.astype(float).mean(axis=1))
        return Solution(X=X_plan, U=np.array(best_U), K=np.zeros((T, nu, self.nx)), k=np.zeros((T, nu)),
                        cost=best_c, iterations=it, converged=False, reason="sampling budget",
                        cost_history=history, solve_time_s=time.perf_counter() - t_start)

    def reset(self) -> None:
        """Forget the warm-started CEM std (a new episode)."""
        self._std = None
