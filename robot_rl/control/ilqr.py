"""Iterative LQR with control limits: ``solve(dynamics, cost, x0, U0, settings) -> Solution``.

Algorithm (Li & Todorov 2004; Tassa, Erez & Todorov 2012 "Synthesis and stabilization of complex behaviors through
online trajectory optimization"; Tassa, Mansard & Todorov 2014 "Control-limited differential dynamic programming"):

1. Derivatives of every timestep at once: ``A [T], B [T]`` from ``dynamics.jacobians``, the Gauss-Newton cost
   expansion as array ops (``cost.expand``).
2. Backward pass (Riccati-like recursion on the Q function), with Levenberg-Marquardt regularization
   ``Q_uu + mu I``. If ``Q_uu + mu I`` is not positive definite, mu grows and the pass restarts.
3. Control limits (``settings.control_limits``):
   ``"boxqp"`` (default) — Tassa 2014: at each step the feedforward ``k_t`` solves the box-constrained QP
   ``min 1/2 du' Q_uu du + Q_u' du  s.t.  u_min - U_t <= du <= u_max - U_t`` (projected Newton), and the feedback
   ``K_t`` acts only on the free (unclamped) controls: rows of clamped controls are zero, so the value function
   sees that a saturated control cannot react to state changes.
   ``"clamp"`` — unconstrained step, controls clipped to the limits in the forward pass (cheaper, less accurate
   near saturation).
4. Forward pass with backtracking line search on the expected improvement ``dV(alpha) = alpha dV1 + alpha^2 dV2``:
   accept when ``(J_new - J) / dV(alpha) > settings.min_improvement_ratio``.
5. mu schedule (Tassa 2012, Sec. II-F): on failure ``delta = max(delta0, delta*delta0), mu = max(mu_min, mu*delta)``;
   on success ``delta = min(1/delta0, delta/delta0), mu = mu*delta`` (0 below ``mu_min``).
6. Stop: relative cost change < ``tol_rel_cost``, or gradient norm ``mean_t max_i |k_t,i| / (|U_t,i| + 1)`` <
   ``tol_grad`` (Tassa 2012), or ``max_iterations`` / ``mu > mu_max`` / wall-clock ``deadline`` (anytime: the best
   plan so far is returned; the cost only ever decreases). The solve stops before an iteration that, taking as long
   as the last one, would end past the deadline, so a replan ends within its budget instead of overrunning it.

The returned policy is ``u = clip(U[t] + K[t] (x - X[t]), u_min, u_max)``.

Speed (bench/results/control.md): with one actuator the backward pass runs in an augmented form, three small
products per step (``_backward_pass_one_control``), or compiled with numba (``IlqrSettings.backend``, optional);
``MujocoDynamics.closed_loop`` steps one MjData in place for the forward passes; ``MujocoDynamics(coarse=True)``
plans on one physics step per control period (one ``mjd_transitionFD`` call per step instead of ``frame_skip``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import scipy.linalg

from robot_rl.control import ilqr_jit


@dataclass(frozen=True)
class IlqrSettings:
    """iLQR settings."""

    max_iterations: int = 100
    """Maximum outer iterations."""
    tol_rel_cost: float = 1e-6
    """Converged when an accepted step lowers the cost by less than this fraction."""
    tol_grad: float = 1e-5
    """Converged when the normalized feedforward norm falls below this (Tassa 2012)."""
    mu_init: float = 0.0
    """Initial regularization on Q_uu."""
    mu_min: float = 1e-6
    """Smallest non-zero mu; smaller values snap to 0."""
    mu_max: float = 1e10
    """Give up (not converged) when mu exceeds this."""
    mu_factor: float = 1.6
    """delta0 of the mu schedule."""
    line_search_steps: int = 10
    """Number of step sizes alpha = 1, decay, decay^2, ..."""
    line_search_decay: float = 0.5
    """Backtracking factor for alpha."""
    min_improvement_ratio: float = 1e-4
    """Accept a step when actual / expected improvement exceeds this."""
    control_limits: Literal["boxqp", "clamp"] = "boxqp"
    """How control limits enter the backward pass (module docstring)."""
    backend: Literal["auto", "numpy", "numba"] = "auto"
    """Backward pass with one actuator, or several with ``control_limits: clamp``: ``numba`` = compiled kernel
    (optional dependency, ~15x faster, compiles ~2 s on first use, cached on disk), ``numpy`` = array ops, ``auto``
    = numba when installed. Several actuators with ``boxqp`` always use numpy."""
    time_budget_s: float = field(default=float("inf"), metadata={"allow_nonfinite": True})
    """Wall-clock budget per solve [s] (anytime); ``inf`` = none."""
    carry_mu: bool = False
    """MPC (``IlqrPlanner``): start each replan's regularization ``mu`` where the previous replan's ended instead of
    at ``mu_init``. With 1 iteration per replan, a rejected step raises mu for the next replan rather than being
    retried unchanged (the Panda's plan otherwise stalled on a step its line search kept rejecting)."""

    def __post_init__(self):
        if self.max_iterations < 1 or self.line_search_steps < 1:
            raise ValueError("max_iterations and line_search_steps must be >= 1")
        if not 0 < self.line_search_decay < 1 or self.mu_factor <= 1:
            raise ValueError("need 0 < line_search_decay < 1 and mu_factor > 1")
        if self.backend == "numba" and not ilqr_jit.AVAILABLE:
            raise ValueError("IlqrSettings.backend='numba' but numba is not installed (pip install numba==0.68.1)")

    @property
    def jit(self) -> bool:
        """Whether the one-actuator backward pass runs the numba kernel."""
        return self.backend == "numba" or (self.backend == "auto" and ilqr_jit.AVAILABLE)


@dataclass
class Solution:
    """Planner result. X [T+1, nx], U [T, nu], K [T, nu, nx] (feedback; zeros for sampling planners), k [T, nu]."""

    X: np.ndarray
    U: np.ndarray
    K: np.ndarray
    k: np.ndarray
    cost: float
    iterations: int
    converged: bool
    reason: str
    cost_history: list[float] = field(default_factory=list)
    mu: float = 0.0
    solve_time_s: float = 0.0
    timings_s: dict[str, float] = field(default_factory=dict)
    """Seconds spent in derivatives / backward / forward, and the number of forward passes (line-search trials)."""


# --------------------------------------------------------------------------- box QP (Tassa 2014, Alg. 3)


def box_qp(H: np.ndarray, g: np.ndarray, lo: np.ndarray, hi: np.ndarray, x0: np.ndarray,
           max_iter: int = 50, tol: float = 1e-9) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Projected-Newton solve of ``min 1/2 x'Hx + g'x  s.t.  lo <= x <= hi``.

    Returns ``(x [n], free [n] bool, L)`` with ``L`` the Cholesky factor of ``H[free][:, free]`` (None when the
    free Hessian is not positive definite, which the caller treats as a backward-pass failure).
    """
    n = len(g)
    if n == 1:  # closed form, the common case (one actuator)
        h = H[0, 0]
        if h <= 0:
            return x0, np.ones(1, bool), None
        x = np.clip(-g / h, lo, hi)
        free = np.array([lo[0] < x[0] < hi[0]])
        return x, free, np.sqrt(H) if free[0] else np.zeros((0, 0))
    x = np.clip(x0, lo, hi)

    def f(z):
        return 0.5 * z @ H @ z + g @ z

    free = np.ones(n, bool)
    L = None
    for _ in range(max_iter):
        grad = g + H @ x
        clamped = ((x <= lo) & (grad > 0)) | ((x >= hi) & (grad < 0))
        free = ~clamped
        if not free.any():
            return x, free, np.zeros((0, 0))
        try:
            L = np.linalg.cholesky(H[np.ix_(free, free)])
        except np.linalg.LinAlgError:
            return x, free, None
        gf = grad[free]
        if np.linalg.norm(gf) < tol:
            break
        dx = np.zeros(n)
        dx[free] = -scipy.linalg.cho_solve((L, True), gf)
        val, step = f(x), 1.0
        slope = grad @ dx
        while step > 1e-12:  # Armijo on the projected path
            xn = np.clip(x + step * dx, lo, hi)
            if f(xn) - val <= 0.1 * step * slope:
                break
            step *= 0.6
        converged = abs(val - f(xn)) < tol * (1 + abs(val))
        x = xn
        if converged:
            break
    grad = g + H @ x
    free = ~(((x <= lo) & (grad > 0)) | ((x >= hi) & (grad < 0)))
    try:
        L = np.linalg.cholesky(H[np.ix_(free, free)]) if free.any() else np.zeros((0, 0))
    except np.linalg.LinAlgError:
        L = None
    return x, free, L


# --------------------------------------------------------------------------- passes


def _backward_pass_one_control(A, B, exp, U, mu, u_min, u_max, boxed: bool):
    """``backward_pass`` for one actuator in augmented form: three small matrix products per step.

    With ``z = [dx, 1, du]`` (size ``nx + 2``) and the value ``V(dx) = 1/2 [dx; 1]' V [dx; 1]`` (``V [nx+1, nx+1]``
    holds ``Vxx`` and, in its last column, ``Vx``), the Q function is ``1/2 z' Z z`` with
    ``Z = G_t' V G_t + H_t``: ``G_t = [[A_t, 0, B_t], [0, 1, 0]]`` maps ``z`` to ``[dx'; 1]``, ``H_t`` holds the
    cost expansion; both terms come from ONE product ``[G_t' | I] [V G_t; H_t]``. The last row of ``Z`` is
    ``[Q_ux, Q_u, Q_uu]``: ``k = -Q_u / h``, ``K = -Q_ux / h`` with ``h = Q_uu + mu``. The value update of Tassa 2012
    (eq. 11) is ``V = Z[:nx+1] M`` with ``M = [I; -s w]``, ``w = Z[-1, :nx+1]``, ``s = (2 - Q_uu / h) / h`` (the
    Schur complement ``1 / Q_uu`` when ``mu = 0``); a clamped control (``K = 0``, Tassa 2014) substitutes ``du = k``:
    ``M = [I; k e]`` with ``e`` the unit vector of the constant. ``V``'s last ROW is never used (only ``Vxx`` and
    the last column feed the next step), so it is left unsymmetrized. Gains and the expected improvement are
    formed after the loop, over the whole horizon at once.
    """
    T, nx, _ = B.shape
    n1, nz = nx + 1, nx + 2
    G = np.zeros((T, n1, nz))
    G[:, :nx, :nx], G[:, :nx, nz - 1], G[:, nx, nx] = A, B[:, :, 0], 1.0
    GI = np.zeros((T, nz, n1 + nz))  # [G_t' | I]
    GI[:, :, :n1] = G.transpose(0, 2, 1)
    GI[:, :, n1:] = np.eye(nz)
    P = np.zeros((T, n1 + nz, nz))  # [V G_t; H_t]; the top block is written in the loop
    H = P[:, n1:]
    lx, lux, lu = exp.lx[:-1], exp.lux[:, 0], exp.lu[:, 0]
    H[:, :nx, :nx] = exp.lxx[:-1]
    H[:, :nx, nx], H[:, nx, :nx] = lx, lx
    H[:, :nx, nz - 1], H[:, nz - 1, :nx] = lux, lux
    H[:, nx, nz - 1] = H[:, nz - 1, nx] = lu
    H[:, nz - 1, nz - 1] = exp.luu[:, 0, 0]
    lo, hi = ((u_min - U)[:, 0].tolist(), (u_max - U)[:, 0].tolist()) if boxed else (None, None)
    V = np.zeros((n1, n1))
    V[:nx, :nx], V[:nx, nx], V[nx, :nx] = exp.lxx[-1], exp.lx[-1], exp.lx[-1]
    Z = np.empty((T, nz, nz))
    M = np.zeros((nz, n1))
    M[:n1] = np.eye(n1)
    Mlast = M[nz - 1]
    kk, hh = np.empty(T), np.empty(T)
    clamped = np.zeros(T, bool)
    dot, multiply = np.dot, np.multiply
    for t in range(T - 1, -1, -1):
        Pt, Zt = P[t], Z[t]
        dot(V, G[t], out=Pt[:n1])
        dot(GI[t], Pt, out=Zt)
        qu, quu = Zt[nz - 1, nx:].tolist()
        h = quu + mu
        if not h > 0:
            return None
        kt = -qu / h
        if boxed and not lo[t] < kt < hi[t]:  # clamped control: no feedback (Tassa 2014), du = k
            kt = min(max(kt, lo[t]), hi[t])
            clamped[t] = True
            Mlast.fill(0.0)
            Mlast[nx] = kt
        else:
            multiply(Zt[nz - 1, :n1], (quu / h - 2.0) / h, out=Mlast)
        dot(Zt[:n1], M, out=V)
        kk[t], hh[t] = kt, h
    W = Z[:, nz - 1]  # [T, nx+2] rows [Q_ux, Q_u, Q_uu]
    K = np.where(clamped[:, None], 0.0, W[:, :nx] * (-1.0 / hh)[:, None])[:, None, :]
    dV = np.array([kk @ W[:, nx], 0.5 * (kk * kk) @ W[:, nz - 1]])
    return K, kk[:, None], dV


def backward_pass(A, B, exp, U, k_prev, mu, u_min, u_max, limits: str, *, jit: bool = False):
    """One backward pass. Returns ``(K [T,nu,nx], k [T,nu], dV (2,))`` or None if ``Q_uu + mu I`` is not PD.

    ``jit``: one actuator on the numba kernel (:mod:`robot_rl.control.ilqr_jit`) instead of numpy.
    """
    T, nx, nu = B.shape
    K = np.zeros((T, nu, nx))
    k = np.zeros((T, nu))
    Vx, Vxx = exp.lx[-1].copy(), exp.lxx[-1].copy()
    dV1 = dV2 = 0.0
    eye = mu * np.eye(nu)
    boxed = limits == "boxqp" and bool(np.isfinite(u_min).any() or np.isfinite(u_max).any())
    if nu == 1:
        if jit and ilqr_jit.usable():
            return ilqr_jit.backward_pass_one_control(A, B, exp, U, mu, u_min, u_max, boxed)
        return _backward_pass_one_control(A, B, exp, U, mu, u_min, u_max, boxed)
    if not boxed and jit and ilqr_jit.usable_clamped():  # compiled, same recursion as below (no box QP)
        return ilqr_jit.backward_pass_clamped(A, B, exp, mu)
    lo, hi = u_min - U, u_max - U  # [T, nu] bounds on the control step
    lx, lu, lxx, luu, lux = exp.lx, exp.lu, exp.lxx, exp.luu, exp.lux
    for t in range(T - 1, -1, -1):
        At, Bt = A[t], B[t]
        VxxA = Vxx @ At
        Qx = lx[t] + Vx @ At
        Qu = lu[t] + Vx @ Bt
        Qxx = lxx[t] + At.T @ VxxA
        Quu = luu[t] + Bt.T @ (Vxx @ Bt)
        Qux = lux[t] + Bt.T @ VxxA
        if boxed:
            kt, free, L = box_qp(Quu + eye, Qu, lo[t], hi[t], k_prev[t])
            if L is None:
                return None
            Kt = np.zeros((nu, nx))
            if free.any():
                Kt[free] = -scipy.linalg.cho_solve((L, True), Qux[free])
        else:
            H = Quu + eye
            if not np.isfinite(H).all():  # an overflowing value function: as not positive definite (mu grows)
                return None
            try:
                np.linalg.cholesky(H)  # positive-definiteness test; the solve below is ~2x cheaper than cho_solve's
            except np.linalg.LinAlgError:  # wrapper for these small matrices (7 controls: 17 vs 33 us)
                return None
            try:
                sol = np.linalg.solve(H, np.column_stack([Qu, Qux]))
            except np.linalg.LinAlgError:  # numerically singular despite the factorization (huge values)
                return None
            kt, Kt = -sol[:, 0], -sol[:, 1:]
        k[t], K[t] = kt, Kt
        # value update valid for any (k, K) (Tassa 2012, eq. 11)
        QuuK = Quu @ Kt
        Quuk = Quu @ kt
        dV1 += kt @ Qu
        dV2 += 0.5 * kt @ Quuk
        Vx = Qx + Kt.T @ (Quuk + Qu) + Qux.T @ kt
        KQux = Kt.T @ Qux
        Vxx = Qxx + Kt.T @ QuuK + KQux + KQux.T
        Vxx = 0.5 * (Vxx + Vxx.T)
    return K, k, np.array([dV1, dV2])


def forward_pass(dynamics, x0, X, U, K, k, alpha, u_min, u_max):
    """Closed-loop rollout ``u_t = clip(U_t + alpha k_t + K_t (x_t - X_t))``. Returns ``(Xn [T+1,nx], Un [T,nu])``;
    Xn is NaN from a diverged step on.
    """
    if hasattr(dynamics, "closed_loop"):  # a model with a faster in-place loop (MujocoDynamics)
        return dynamics.closed_loop(x0, X, U, K, k, alpha)
    T = len(U)
    Xn = np.empty_like(X)
    Un = np.empty_like(U)
    Xn[0] = x0
    for t in range(T):
        u = np.minimum(np.maximum(U[t] + alpha * k[t] + K[t] @ (Xn[t] - X[t]), u_min), u_max)
        Un[t] = u
        Xn[t + 1] = dynamics.step(Xn[t], u)
        if not np.all(np.isfinite(Xn[t + 1])):
            Xn[t + 1:] = np.nan
            Un[t + 1:] = U[t + 1:]
            break
    return Xn, Un


def _open_loop(dynamics, x0, U):
    T, nx = len(U), dynamics.nx
    return forward_pass(dynamics, x0, np.zeros((T + 1, nx)), U, np.zeros((T, U.shape[1], nx)), np.zeros_like(U), 0.0,
                        dynamics.u_min, dynamics.u_max)


# --------------------------------------------------------------------------- solver


def solve(dynamics, cost, x0, U0, settings: IlqrSettings = IlqrSettings(), *, deadline: float | None = None,
          X_ref: np.ndarray | None = None, K0: np.ndarray | None = None) -> Solution:
    """Optimize ``U [T, nu]`` from ``x0 [nx]``.

    ``deadline`` is an absolute ``time.perf_counter()`` value (overrides ``settings.time_budget_s``).
    Warm start with feedback: given ``X_ref [T+1, nx]`` and ``K0 [T, nu, nx]`` (a previous plan, time-shifted), the
    initial trajectory is the closed-loop rollout of ``u = U0[t] + K0[t] (x - X_ref[t])`` instead of the open-loop
    rollout of ``U0`` — on an unstable system (the balancing cart-pole) that keeps the warm start near the old plan.

    One function on purpose: it is the MPC replan, run every control period against a deadline, and each branch of its
    Levenberg-Marquardt schedule updates the iterate (X, U, K, k, J) and the regularization (mu, delta) together; as
    helpers, those values would be passed in and returned again on every iteration.
    """
    t_start = time.perf_counter()
    if deadline is None:
        deadline = t_start + settings.time_budget_s
    x0 = np.asarray(x0, float)
    u_min, u_max = dynamics.u_min, dynamics.u_max
    U = np.clip(np.asarray(U0, float), u_min, u_max)
    if U.ndim != 2 or U.shape[1] != dynamics.nu or x0.shape != (dynamics.nx,):
        raise ValueError(f"ilqr.solve: expected x0 [{dynamics.nx}] and U0 [T, {dynamics.nu}], got {x0.shape}, "
                         f"{np.shape(U0)}")
    T, nu, nx = len(U), dynamics.nu, dynamics.nx
    if X_ref is not None and K0 is not None:
        X, U = forward_pass(dynamics, x0, np.asarray(X_ref, float), U, np.asarray(K0, float), np.zeros_like(U), 0.0,
                            u_min, u_max)
    else:
        X, U = _open_loop(dynamics, x0, U)
    J = float(cost.total(X, U))
    K, k = np.zeros((T, nu, nx)), np.zeros((T, nu))
    history = [J]
    timings = {"derivatives": 0.0, "backward": 0.0, "forward": 0.0, "forward_passes": 0}
    if not np.isfinite(J):
        return Solution(X, U, K, k, J, 0, False, "initial rollout diverged", history,
                        solve_time_s=time.perf_counter() - t_start, timings_s=timings)
    mu, delta = settings.mu_init, 1.0
    alphas = settings.line_search_decay ** np.arange(settings.line_search_steps)
    jit = settings.jit
    converged, reason, it = False, "max_iterations", 0
    for it in range(1, settings.max_iterations + 1):  # noqa: B007 (it is reported)
        t0 = time.perf_counter()
        A, B = dynamics.jacobians(X, U)
        exp = cost.expand(X, U)
        t1 = time.perf_counter()
        timings["derivatives"] += t1 - t0
        # ---- backward pass, increasing mu until Q_uu is PD
        while True:
            out = backward_pass(A, B, exp, U, k, mu, u_min, u_max, settings.control_limits, jit=jit)
            if out is not None:
                break
            delta = max(settings.mu_factor, delta * settings.mu_factor)
            mu = max(settings.mu_min, mu * delta)
            if mu > settings.mu_max:
                break
        t2 = time.perf_counter()
        timings["backward"] += t2 - t1
        if out is None:
            reason = "regularization exceeded mu_max in the backward pass"
            break
        K_new, k_new, dV = out
        grad_norm = float(np.mean(np.max(np.abs(k_new) / (np.abs(U) + 1.0), axis=1)))
        if grad_norm < settings.tol_grad and mu < settings.mu_min:
            K, k = K_new, k_new
            converged, reason = True, "gradient norm below tol_grad"
            break
        # ---- forward pass with backtracking line search
        accepted = False
        for alpha in alphas:
            timings["forward_passes"] += 1
            Xn, Un = forward_pass(dynamics, x0, X, U, K_new, k_new, alpha, u_min, u_max)
            Jn = float(cost.total(Xn, Un))
            expected = alpha * dV[0] + alpha**2 * dV[1]
            ratio = (Jn - J) / expected if expected < 0 else (1.0 if Jn < J else -1.0)
            if np.isfinite(Jn) and Jn < J and ratio > settings.min_improvement_ratio:
                accepted = True
                break
        timings["forward"] += time.perf_counter() - t2
        if accepted:
            rel = (J - Jn) / max(abs(J), 1e-12)
            X, U, J, K, k = Xn, Un, Jn, K_new, k_new
            history.append(J)
            delta = min(1.0 / settings.mu_factor, delta / settings.mu_factor)
            mu = mu * delta if mu * delta >= settings.mu_min else 0.0
            if rel < settings.tol_rel_cost:
                converged, reason = True, "relative cost change below tol_rel_cost"
                break
        else:
            if grad_norm < settings.tol_grad:
                K, k = K_new, k_new
                converged, reason = True, "gradient norm below tol_grad"
                break
            delta = max(settings.mu_factor, delta * settings.mu_factor)
            mu = max(settings.mu_min, mu * delta)
            if mu > settings.mu_max:
                reason = "regularization exceeded mu_max in the line search"
                break
        now = time.perf_counter()
        if now + (now - t0) > deadline:  # anytime: the next iteration, as long as this one, would overrun
            reason = "time budget"
            break
    return Solution(X, U, K, k, J, it, converged, reason, history, mu, time.perf_counter() - t_start, timings)

