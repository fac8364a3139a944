"""Planner costs as named residual terms with weights kept as data (MuJoCo MPC style).

Each term ``i`` has a residual ``r_i(z)`` of the state (``z = x``) or of the control (``z = u``) and weights::

    running  l(x, u) = sum_i  weight_i          * 1/2 |r_i|^2
    terminal l_T(x)  = sum_i  terminal_weight_i * 1/2 |r_i(x)|^2      (state terms only)

Derivatives are analytic: gradient ``J' r`` and the Gauss-Newton Hessian ``J' J`` (always PSD, which is what iLQR
wants), computed for all timesteps as array ops. Evaluation is batched over any leading dimensions for sampling
planners; a non-finite trajectory (diverged rollout) costs ``inf``.

Residual kinds (YAML ``kind``):

* ``state``: ``r = x[indices] - target``.
* ``angle``: one angle ``q = x[index]``; ``r = [cos q - cos target, sin q - sin target]`` so
  ``1/2 |r|^2 = 1 - cos(q - target)`` (wrap-free; 0 upright for the cart-pole hinge, 2 hanging).
* ``control``: ``r = u[indices] - target`` (default all controls, target 0).
* ``planar_reach``: fingertip of a planar chain with joint angles ``x[indices]`` and ``link_lengths`` [m] minus a
  2-D ``target`` [m] in the chain's base frame.

YAML format: see ``config/costs/*.yaml`` and docs/control.md.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from robot_rl.core.config import load_config


@dataclass(frozen=True)
class CostTermConfig:
    """One residual term."""

    name: str
    """Term name (unique within the cost), e.g. ``upright``."""
    kind: Literal["state", "angle", "control", "planar_reach"]
    """Residual kind, see the module docstring."""
    weight: float
    """Running weight (per control step)."""
    terminal_weight: float = 0.0
    """Weight at the final state of the horizon (state terms only)."""
    indices: tuple[int, ...] = ()
    """State (or control) indices the residual reads; ``control`` with none means all controls."""
    target: tuple[float, ...] = ()
    """Target values (same length as the residual input; empty = zeros)."""
    link_lengths: tuple[float, ...] = ()
    """``planar_reach`` only: link lengths [m], one per index."""

    def __post_init__(self):
        if self.weight < 0 or self.terminal_weight < 0:
            raise ValueError(f"term {self.name!r}: weights must be >= 0")
        if self.kind == "control" and self.terminal_weight != 0:
            raise ValueError(f"term {self.name!r}: a control term has no terminal weight")
        if self.kind in ("state", "angle", "planar_reach") and not self.indices:
            raise ValueError(f"term {self.name!r}: kind {self.kind!r} needs indices")
        if self.kind == "angle" and len(self.indices) != 1:
            raise ValueError(f"term {self.name!r}: kind 'angle' takes exactly one index")
        if self.kind == "angle" and len(self.target) > 1:
            raise ValueError(f"term {self.name!r}: kind 'angle' takes one target angle [rad]")
        if self.kind == "planar_reach":
            if len(self.link_lengths) != len(self.indices):
                raise ValueError(f"term {self.name!r}: need one link length per index")
            if len(self.target) not in (0, 2):
                raise ValueError(f"term {self.name!r}: planar_reach target is (x, y) [m]")
        elif self.kind in ("state", "control") and self.target and len(self.target) != len(self.indices):
            raise ValueError(f"term {self.name!r}: target must have one value per index")


@dataclass(frozen=True)
class CostConfig:
    """A planner cost: named residual terms."""

    name: str
    """Cost name, e.g. ``cartpole_swingup``."""
    nx: int
    """State dimension the cost expects."""
    nu: int
    """Control dimension the cost expects."""
    terms: tuple[CostTermConfig, ...]
    """Residual terms."""
    state_names: tuple[str, ...] = ()
    """Optional names of the state entries (documentation and checks)."""

    def __post_init__(self):
        names = [t.name for t in self.terms]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate term names in {names}")
        if not self.terms:
            raise ValueError("a cost needs at least one term")
        if self.state_names and len(self.state_names) != self.nx:
            raise ValueError(f"state_names has {len(self.state_names)} entries, nx is {self.nx}")
        for t in self.terms:
            dim = self.nu if t.kind == "control" else self.nx
            if any(not 0 <= i < dim for i in t.indices):
                raise ValueError(f"term {t.name!r}: index out of range for dimension {dim}: {t.indices}")


@dataclass(frozen=True)
class CostExpansion:
    """Quadratic expansion along a trajectory of horizon ``T``.

    c [T+1] (per-step cost, last = terminal), lx [T+1, nx], lu [T, nu], lxx [T+1, nx, nx], luu [T, nu, nu],
    lux [T, nu, nx].
    """

    c: np.ndarray
    lx: np.ndarray
    lu: np.ndarray
    lxx: np.ndarray
    luu: np.ndarray
    lux: np.ndarray


def _residual(t: CostTermConfig, z: np.ndarray, dim: int,
              jacobian: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Residual ``r [..., m]`` of term ``t`` at ``z [..., dim]`` and its Jacobian ``J [..., m, dim]`` (or None)."""
    lead = z.shape[:-1]
    if t.kind in ("state", "control"):
        idx = list(t.indices) if t.indices else list(range(dim))
        target = np.asarray(t.target, float) if t.target else 0.0
        r = z[..., idx] - target
        if not jacobian:
            return r, None
        S = np.zeros((len(idx), dim))
        S[np.arange(len(idx)), idx] = 1.0
        return r, np.broadcast_to(S, (*lead, *S.shape))
    if t.kind == "angle":
        i = t.indices[0]
        q0 = t.target[0] if t.target else 0.0
        q = z[..., i]
        c, s = np.cos(q), np.sin(q)
        r = np.stack([c - np.cos(q0), s - np.sin(q0)], axis=-1)
        if not jacobian:
            return r, None
        J = np.zeros((*lead, 2, dim))
        J[..., 0, i], J[..., 1, i] = -s, c
        return r, J
    # planar_reach: p = sum_k l_k [cos(phi_k), sin(phi_k)], phi_k = q_1 + ... + q_k
    lengths = np.asarray(t.link_lengths, float)
    phi = np.cumsum(z[..., list(t.indices)], axis=-1)  # [..., k]
    cx, sy = lengths * np.cos(phi), lengths * np.sin(phi)
    target = np.asarray(t.target, float) if t.target else np.zeros(2)
    r = np.stack([cx.sum(-1), sy.sum(-1)], axis=-1) - target
    if not jacobian:
        return r, None
    # d p / d q_j = sum_{k >= j} l_k [-sin phi_k, cos phi_k]: reverse cumulative sums
    dpx = -np.flip(np.cumsum(np.flip(sy, -1), -1), -1)
    dpy = np.flip(np.cumsum(np.flip(cx, -1), -1), -1)
    J = np.zeros((*lead, 2, dim))
    J[..., 0, list(t.indices)], J[..., 1, list(t.indices)] = dpx, dpy
    return r, J


class _Stacked:
    """The ``state``, ``angle`` and ``control`` terms of a cost merged into one residual per kind, for evaluation in a
    few array ops. Their Gauss-Newton Hessians are constant (``S'S`` for a selection ``S``; ``J'J = 1`` for an angle,
    whose residual gradient is ``[-sin q, cos q]``), so ``lxx`` / ``luu`` are precomputed diagonals.
    """

    def __init__(self, terms: list[CostTermConfig], dim: int, kind: str):
        idx, target, w_run, w_term = [], [], [], []
        for t in terms:
            i = list(t.indices) if t.indices else list(range(dim))
            idx += i
            target += list(t.target) if t.target else [0.0] * len(i)
            w_run += [t.weight] * len(i)
            w_term += [t.terminal_weight] * len(i)
        self.idx, self.target = np.asarray(idx, int), np.asarray(target, float)
        self.w_run, self.w_term = np.asarray(w_run, float), np.asarray(w_term, float)
        self.select = np.zeros((len(idx), dim))  # [m, dim]: gradient = (weighted residual) @ select
        self.select[np.arange(len(idx)), idx] = 1.0
        self.hess_run = np.diag(self.w_run @ self.select)  # [dim, dim]
        self.hess_term = np.diag(self.w_term @ self.select)
        self.kind = kind
        self.empty = not idx

    def half_sq(self, z: np.ndarray) -> np.ndarray:
        """Per-element cost without weight ``[..., m]``: ``1/2 r^2`` (state, control) or ``1 - cos(q - target)``."""
        d = z[..., self.idx] - self.target
        return 1.0 - np.cos(d) if self.kind == "angle" else 0.5 * d * d

    def grad(self, z: np.ndarray) -> np.ndarray:
        """Unweighted ``J' r`` per element ``[..., m]`` (``sin(q - target)`` for angles)."""
        d = z[..., self.idx] - self.target
        return np.sin(d) if self.kind == "angle" else d


class Cost:
    """Evaluates a :class:`CostConfig`. Shapes: ``X [..., T+1, nx]``, ``U [..., T, nu]``."""

    def __init__(self, config: CostConfig):
        self.config = config
        self.nx, self.nu = config.nx, config.nu
        self.state_terms = [t for t in config.terms if t.kind != "control"]
        self.control_terms = [t for t in config.terms if t.kind == "control"]
        self._reach_terms = [t for t in config.terms if t.kind == "planar_reach"]
        self._stacks_x = [s for s in (_Stacked([t for t in config.terms if t.kind == k], self.nx, k)
                                      for k in ("state", "angle")) if not s.empty]
        self._stack_u = _Stacked(self.control_terms, self.nu, "control")

    @classmethod
    def from_yaml(cls, path: str | Path, overrides=()) -> Cost:
        return cls(load_config(CostConfig, path, overrides=overrides))

    def with_target(self, term: str, target) -> Cost:
        """A copy with term ``term``'s target replaced (e.g. a new reach goal)."""
        names = [t.name for t in self.config.terms]
        if term not in names:
            raise KeyError(f"cost {self.config.name!r} has no term {term!r}; terms: {names}")
        terms = tuple(dataclasses.replace(t, target=tuple(float(v) for v in np.ravel(target))) if t.name == term
                      else t for t in self.config.terms)
        return Cost(dataclasses.replace(self.config, terms=terms))

    def _check(self, X: np.ndarray, U: np.ndarray) -> None:
        if X.shape[-1] != self.nx or U.shape[-1] != self.nu or X.shape[-2] != U.shape[-2] + 1:
            raise ValueError(f"cost {self.config.name!r}: expected X [..., T+1, {self.nx}] and U [..., T, {self.nu}],"
                             f" got {X.shape} and {U.shape}")

    def terms(self, X: np.ndarray, U: np.ndarray) -> dict[str, np.ndarray]:
        """Per-term totals over the horizon (running + terminal), shape ``[...]`` each."""
        X, U = np.asarray(X, float), np.asarray(U, float)
        self._check(X, U)
        out = {}
        with np.errstate(invalid="ignore", over="ignore"):
            for t in self.state_terms:
                r, _ = _residual(t, X, self.nx, jacobian=False)
                sq = 0.5 * np.sum(r * r, axis=-1)  # [..., T+1]
                out[t.name] = t.weight * sq[..., :-1].sum(-1) + t.terminal_weight * sq[..., -1]
            for t in self.control_terms:
                r, _ = _residual(t, U, self.nu, jacobian=False)
                out[t.name] = t.weight * 0.5 * np.sum(r * r, axis=(-1, -2))
        return out

    def total(self, X: np.ndarray, U: np.ndarray) -> np.ndarray:
        """Total cost ``[...]``; ``inf`` where the trajectory is non-finite (diverged)."""
        X, U = np.asarray(X, float), np.asarray(U, float)
        self._check(X, U)
        with np.errstate(invalid="ignore", over="ignore"):
            c = 0.0
            for st in self._stacks_x:
                e = st.half_sq(X)  # [..., T+1, m]
                c = c + e[..., :-1, :].sum(-2) @ st.w_run + e[..., -1, :] @ st.w_term
            if not self._stack_u.empty:
                c = c + self._stack_u.half_sq(U).sum(-2) @ self._stack_u.w_run
            for t in self._reach_terms:
                r, _ = _residual(t, X, self.nx, jacobian=False)
                sq = 0.5 * np.sum(r * r, axis=-1)
                c = c + t.weight * sq[..., :-1].sum(-1) + t.terminal_weight * sq[..., -1]
        finite = np.all(np.isfinite(X), axis=(-1, -2)) & np.isfinite(c)
        return np.where(finite, c, np.inf)

    def expand(self, X: np.ndarray, U: np.ndarray) -> CostExpansion:
        """Gauss-Newton quadratic expansion along one trajectory ``X [T+1, nx]``, ``U [T, nu]``."""
        X, U = np.asarray(X, float), np.asarray(U, float)
        self._check(X, U)
        T = len(U)
        c = np.zeros(T + 1)
        lx = np.zeros((T + 1, self.nx))
        lxx = np.empty((T + 1, self.nx, self.nx))
        lxx[:-1] = sum((st.hess_run for st in self._stacks_x), np.zeros((self.nx, self.nx)))
        lxx[-1] = sum((st.hess_term for st in self._stacks_x), np.zeros((self.nx, self.nx)))
        for st in self._stacks_x:
            g = st.grad(X)  # [T+1, m]
            g[:-1] *= st.w_run
            g[-1] *= st.w_term
            lx += g @ st.select
            e = st.half_sq(X)
            c[:-1] += e[:-1] @ st.w_run
            c[-1] += e[-1] @ st.w_term
        for t in self._reach_terms:
            r, J = _residual(t, X, self.nx)
            w = np.full(T + 1, t.weight)
            w[-1] = t.terminal_weight
            c += w * 0.5 * np.sum(r * r, -1)
            lx += w[:, None] * np.einsum("tmi,tm->ti", J, r)
            lxx += w[:, None, None] * np.einsum("tmi,tmj->tij", J, J)
        su = self._stack_u
        if su.empty:
            lu, luu = np.zeros((T, self.nu)), np.zeros((T, self.nu, self.nu))
        else:
            lu = (su.grad(U) * su.w_run) @ su.select
            c[:-1] += su.half_sq(U) @ su.w_run
            luu = np.broadcast_to(su.hess_run, (T, self.nu, self.nu)).copy()
        return CostExpansion(c=c, lx=lx, lu=lu, lxx=lxx, luu=luu, lux=np.zeros((T, self.nu, self.nx)))


def quadratic(Q: np.ndarray, R: np.ndarray, Qf: np.ndarray, name: str = "quadratic") -> QuadraticCost:
    """LQR cost ``1/2 x'Qx + 1/2 u'Ru`` (+ ``1/2 x_T' Qf x_T``) with the same interface as :class:`Cost`."""
    return QuadraticCost(np.asarray(Q, float), np.asarray(R, float), np.asarray(Qf, float), name)


@dataclass(frozen=True)
class QuadraticCost:
    """General (non-diagonal) quadratic cost; used to check iLQR against LQR."""

    Q: np.ndarray
    R: np.ndarray
    Qf: np.ndarray
    name: str = "quadratic"
    nx: int = field(init=False)
    nu: int = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "nx", self.Q.shape[0])
        object.__setattr__(self, "nu", self.R.shape[0])

    def total(self, X, U) -> np.ndarray:
        X, U = np.asarray(X, float), np.asarray(U, float)
        with np.errstate(invalid="ignore", over="ignore"):
            c = 0.5 * (np.einsum("...ti,ij,...tj->...", X[..., :-1, :], self.Q, X[..., :-1, :])
                       + np.einsum("...ti,ij,...tj->...", U, self.R, U)
                       + np.einsum("...i,ij,...j->...", X[..., -1, :], self.Qf, X[..., -1, :]))
        return np.where(np.all(np.isfinite(X), axis=(-1, -2)) & np.isfinite(c), c, np.inf)

    def expand(self, X, U) -> CostExpansion:
        T = len(U)
        c = np.zeros(T + 1)
        c[:-1] = 0.5 * (np.einsum("ti,ij,tj->t", X[:-1], self.Q, X[:-1]) + np.einsum("ti,ij,tj->t", U, self.R, U))
        c[-1] = 0.5 * X[-1] @ self.Qf @ X[-1]
        lx = np.concatenate([X[:-1] @ self.Q, (X[-1] @ self.Qf)[None]])
        lxx = np.concatenate([np.broadcast_to(self.Q, (T, self.nx, self.nx)), self.Qf[None]])
        return CostExpansion(c=c, lx=lx, lu=U @ self.R, lxx=lxx, luu=np.broadcast_to(self.R, (T, self.nu, self.nu)),
                             lux=np.zeros((T, self.nu, self.nx)))
