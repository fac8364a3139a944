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
* ``site_position``: position [m] of the MuJoCo site ``site`` by forward kinematics (``mj_kinematics``) of the joint
  positions ``qpos = x[indices]`` (one index per qpos entry of the planner's model) minus a 3-D ``target`` [m] in
  the model's world frame; Jacobian from ``mj_jacSite``. Needs the model: ``Cost(config, model=...)``.
* ``limit``: ``r = x[indices] - clip(x[indices], lower, upper)``: zero inside the bounds, the overshoot outside
  (a quadratic penalty on leaving joint position or velocity limits; Gauss-Newton Hessian on the violated entries).
* ``servo_error``: ``r = u[indices] - x[state_indices] - target`` (running only): for position-target controls the
  servo's position error, proportional to the effort ``kp r`` it commands; zero at rest, so unlike a ``control``
  term toward a fixed target it does not pull where the arm settles.

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
    kind: Literal["state", "angle", "control", "planar_reach", "site_position", "limit", "servo_error"]
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
    site: str = ""
    """``site_position`` only: the MuJoCo site (e.g. the robot profile's ``ee_site``)."""
    lower: tuple[float, ...] = ()
    """``limit`` only: lower bounds, one per index."""
    upper: tuple[float, ...] = ()
    """``limit`` only: upper bounds, one per index."""
    state_indices: tuple[int, ...] = ()
    """``servo_error`` only: state index of the joint position each control (``indices``) commands."""

    def __post_init__(self):
        if self.weight < 0 or self.terminal_weight < 0:
            raise ValueError(f"term {self.name!r}: weights must be >= 0")
        if self.kind == "control" and self.terminal_weight != 0:
            raise ValueError(f"term {self.name!r}: a control term has no terminal weight")
        if self.kind in ("control", "servo_error") and self.terminal_weight != 0:
            raise ValueError(f"term {self.name!r}: a {self.kind} term has no terminal weight")
        if self.kind in ("state", "angle", "planar_reach", "site_position", "limit", "servo_error") \
                and not self.indices:
            raise ValueError(f"term {self.name!r}: kind {self.kind!r} needs indices")
        if self.kind == "angle" and len(self.indices) != 1:
            raise ValueError(f"term {self.name!r}: kind 'angle' takes exactly one index")
        if self.kind == "angle" and len(self.target) > 1:
            raise ValueError(f"term {self.name!r}: kind 'angle' takes one target angle [rad]")
        if self.kind == "site_position":
            if not self.site:
                raise ValueError(f"term {self.name!r}: kind 'site_position' needs a site name")
            if len(self.target) not in (0, 3):
                raise ValueError(f"term {self.name!r}: site_position target is (x, y, z) [m], got {self.target}")
        if self.kind == "limit":
            if len(self.lower) != len(self.indices) or len(self.upper) != len(self.indices):
                raise ValueError(f"term {self.name!r}: kind 'limit' needs one lower and one upper bound per index, "
                                 f"got {len(self.indices)} indices, {len(self.lower)} lower, {len(self.upper)} upper")
            if any(lo > hi for lo, hi in zip(self.lower, self.upper)):
                raise ValueError(f"term {self.name!r}: lower bound above upper bound: {self.lower} / {self.upper}")
        if self.kind == "servo_error":
            if len(self.state_indices) != len(self.indices):
                raise ValueError(f"term {self.name!r}: kind 'servo_error' needs one state index per control index")
            if self.target and len(self.target) != len(self.indices):
                raise ValueError(f"term {self.name!r}: target must have one value per index")
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
            dim = self.nu if t.kind in ("control", "servo_error") else self.nx
            if any(not 0 <= i < dim for i in t.indices):
                raise ValueError(f"term {t.name!r}: index out of range for dimension {dim}: {t.indices}")
            if any(not 0 <= i < self.nx for i in t.state_indices):
                raise ValueError(f"term {t.name!r}: state index out of range for nx={self.nx}: {t.state_indices}")


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


class _Site:
    """Forward kinematics of one MuJoCo site: positions and ``mj_jacSite`` Jacobians for a batch of joint
    positions (the ``site_position`` residual). Owns its ``MjData`` (not shared with the planner's dynamics).
    """

    def __init__(self, model, term: CostTermConfig, nx: int):
        import mujoco

        self._mj = mujoco
        if model is None:
            raise ValueError(f"term {term.name!r}: kind 'site_position' needs the planner's MuJoCo model "
                             "(Cost(config, model=...))")
        if model.nq != model.nv or len(term.indices) != model.nq:
            raise ValueError(f"term {term.name!r}: site_position needs one state index per qpos entry of a model with "
                             f"nq == nv; got {len(term.indices)} indices, model nq={model.nq}, nv={model.nv}")
        self.id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, term.site)
        if self.id < 0:
            names = [model.site(i).name for i in range(model.nsite)]
            raise ValueError(f"term {term.name!r}: site {term.site!r} is not in the model; sites: {names}")
        self.model, self.data = model, mujoco.MjData(model)
        self.idx = list(term.indices)
        self.nx = nx
        self._jacp = np.zeros((3, model.nv))

    def evaluate(self, Q: np.ndarray, jacobian: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """``Q [n, nq]`` -> positions ``[n, 3]`` and (with ``jacobian``) ``dp/dx [n, 3, nx]``; a non-finite row
        gives NaN.
        """
        mj, m, d = self._mj, self.model, self.data
        n = len(Q)
        P = np.full((n, 3), np.nan)
        J = np.zeros((n, 3, self.nx)) if jacobian else None
        qpos, xpos, jacp = d.qpos, d.site_xpos[self.id], self._jacp
        finite = np.all(np.isfinite(Q), axis=1)
        for i in range(n):
            if not finite[i]:
                continue
            qpos[:] = Q[i]
            mj.mj_kinematics(m, d)
            P[i] = xpos
            if jacobian:
                mj.mj_comPos(m, d)
                mj.mj_jacSite(m, d, jacp, None, self.id)
                J[i][:, self.idx] = jacp  # nq == nv: qpos entry k is dof k
        return P, J


class Cost:
    """Evaluates a :class:`CostConfig`. Shapes: ``X [..., T+1, nx]``, ``U [..., T, nu]``. ``model``: the planner's
    MuJoCo model, needed by ``site_position`` terms (forward kinematics).
    """

    def __init__(self, config: CostConfig, model=None):
        self.config = config
        self.model = model
        self.nx, self.nu = config.nx, config.nu
        self.state_terms = [t for t in config.terms if t.kind not in ("control", "servo_error")]
        self.control_terms = [t for t in config.terms if t.kind == "control"]
        self._reach_terms = [t for t in config.terms if t.kind == "planar_reach"]
        self._limit_terms = [t for t in config.terms if t.kind == "limit"]
        self._servo_terms = [t for t in config.terms if t.kind == "servo_error"]
        self._sites = {t.name: _Site(model, t, self.nx) for t in config.terms if t.kind == "site_position"}
        self._site_terms = [t for t in config.terms if t.kind == "site_position"]
        self._stacks_x = [s for s in (_Stacked([t for t in config.terms if t.kind == k], self.nx, k)
                                      for k in ("state", "angle")) if not s.empty]
        self._stack_u = _Stacked(self.control_terms, self.nu, "control")

    @classmethod
    def from_yaml(cls, path: str | Path, overrides=(), model=None) -> Cost:
        return cls(load_config(CostConfig, path, overrides=overrides), model=model)

    def with_target(self, term: str, target) -> Cost:
        """A copy with term ``term``'s target replaced (e.g. a new reach goal); same model."""
        names = [t.name for t in self.config.terms]
        if term not in names:
            raise KeyError(f"cost {self.config.name!r} has no term {term!r}; terms: {names}")
        terms = tuple(dataclasses.replace(t, target=tuple(float(v) for v in np.ravel(target))) if t.name == term
                      else t for t in self.config.terms)
        return Cost(dataclasses.replace(self.config, terms=terms), model=self.model)

    def _extra_residual(self, t: CostTermConfig, X: np.ndarray, U: np.ndarray | None,
                        jacobian: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Residual ``[..., T(+1), m]`` of a ``site_position`` / ``limit`` / ``servo_error`` term (and its Jacobian
        w.r.t. the state, ``[..., m, nx]``; for ``servo_error`` the state part, the control part is ``+I``).
        """
        if t.kind == "site_position":
            lead = X.shape[:-1]
            Q = X[..., list(t.indices)].reshape(-1, len(t.indices))
            P, J = self._sites[t.name].evaluate(Q, jacobian)
            target = np.asarray(t.target, float) if t.target else np.zeros(3)
            r = (P - target).reshape(*lead, 3)
            return r, None if J is None else J.reshape(*lead, 3, self.nx)
        if t.kind == "limit":
            z = X[..., list(t.indices)]
            r = z - np.clip(z, np.asarray(t.lower, float), np.asarray(t.upper, float))
            if not jacobian:
                return r, None
            m = len(t.indices)
            J = np.zeros((*r.shape, self.nx))
            J[..., np.arange(m), list(t.indices)] = (r != 0).astype(float)
            return r, J
        # servo_error: u[indices] - x[state_indices] - target over the T running steps
        target = np.asarray(t.target, float) if t.target else 0.0
        r = U[..., list(t.indices)] - X[..., :-1, list(t.state_indices)] - target
        if not jacobian:
            return r, None
        m = len(t.indices)
        J = np.zeros((m, self.nx))
        J[np.arange(m), list(t.state_indices)] = -1.0
        return r, np.broadcast_to(J, (*r.shape[:-1], m, self.nx))

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
                if t.kind in ("site_position", "limit"):
                    r, _ = self._extra_residual(t, X, U, jacobian=False)
                else:
                    r, _ = _residual(t, X, self.nx, jacobian=False)
                sq = 0.5 * np.sum(r * r, axis=-1)  # [..., T+1]
                out[t.name] = t.weight * sq[..., :-1].sum(-1) + t.terminal_weight * sq[..., -1]
            for t in self.control_terms:
                r, _ = _residual(t, U, self.nu, jacobian=False)
                out[t.name] = t.weight * 0.5 * np.sum(r * r, axis=(-1, -2))
            for t in self._servo_terms:
                r, _ = self._extra_residual(t, X, U, jacobian=False)
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
            for t in self._site_terms + self._limit_terms:
                r, _ = self._extra_residual(t, X, U, jacobian=False)
                sq = 0.5 * np.sum(r * r, axis=-1)
                c = c + t.weight * sq[..., :-1].sum(-1) + t.terminal_weight * sq[..., -1]
            for t in self._servo_terms:
                r, _ = self._extra_residual(t, X, U, jacobian=False)
                c = c + t.weight * 0.5 * np.sum(r * r, axis=(-1, -2))
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
        for t in self._site_terms + self._limit_terms:
            r, J = self._extra_residual(t, X, U, jacobian=True)
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
        lux = np.zeros((T, self.nu, self.nx))
        for t in self._servo_terms:  # r = S_u u - S_x x - target: J_u = S_u, J_x = -S_x
            r, _ = self._extra_residual(t, X, U, jacobian=False)
            iu, ix = list(t.indices), list(t.state_indices)
            w = t.weight
            c[:-1] += w * 0.5 * np.sum(r * r, -1)
            np.add.at(lu, (slice(None), iu), w * r)
            np.add.at(lx[:-1], (slice(None), ix), -w * r)
            for a, b in zip(iu, ix):
                luu[:, a, a] += w
                lux[:, a, b] -= w
                lxx[:-1, b, b] += w
        return CostExpansion(c=c, lx=lx, lu=lu, lxx=lxx, luu=luu, lux=lux)


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
