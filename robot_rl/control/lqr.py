"""Discrete-time LQR: finite horizon (backward Riccati recursion) and infinite horizon (DARE).

Problem (time-invariant)::

    minimize  sum_{t=0}^{T-1} 1/2 (x_t' Q x_t + u_t' R u_t + 2 u_t' N' x_t)  +  1/2 x_T' Qf x_T
    s.t.      x_{t+1} = A x_t + B u_t

The optimal policy is ``u_t = K_t x_t`` (note the sign: gains are returned so that ``u = K x``, the same convention
as the iLQR feedback ``u = U[t] + K[t] (x - X[t])``). Shapes: ``A [nx, nx]``, ``B [nx, nu]``, ``Q, Qf [nx, nx]``,
``R [nu, nu]``, ``N [nx, nu]``. Time-varying problems pass stacks ``A [T, nx, nx]``, ``B [T, nx, nu]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg


@dataclass(frozen=True)
class LqrSolution:
    """Finite-horizon LQR result.

    K: feedback gains ``[T, nu, nx]`` (u_t = K_t x_t).
    P: cost-to-go Hessians ``[T+1, nx, nx]`` (V_t(x) = 1/2 x' P_t x); ``P[T] = Qf``.
    """

    K: np.ndarray
    P: np.ndarray

    def cost(self, x0: np.ndarray) -> float:
        """Optimal cost 1/2 x0' P_0 x0 from initial state ``x0 [nx]``."""
        x0 = np.asarray(x0, dtype=float)
        return float(0.5 * x0 @ self.P[0] @ x0)


def _check_square(name: str, M: np.ndarray, n: int) -> None:
    if M.shape[-2:] != (n, n):
        raise ValueError(f"LQR: {name} must have trailing shape ({n}, {n}), got {M.shape}")


def _stack(M: np.ndarray, T: int, name: str) -> np.ndarray:
    M = np.asarray(M, dtype=float)
    if M.ndim == 2:
        return np.broadcast_to(M, (T, *M.shape))
    if M.ndim == 3 and M.shape[0] == T:
        return M
    raise ValueError(f"LQR: {name} must be [rows, cols] or [T={T}, rows, cols], got shape {M.shape}")


def finite_horizon(A, B, Q, R, Qf, horizon: int, N=None) -> LqrSolution:
    """Backward Riccati recursion over ``horizon`` steps (time-varying A, B allowed as stacks).

    Recursion (e.g. Bertsekas, Dynamic Programming and Optimal Control, Vol. I, Sec. 4.1)::

        Q_uu = R + B' P B,  Q_ux = N' + B' P A,  K = -Q_uu^{-1} Q_ux,
        P    = Q + A' P A + Q_ux' K      (symmetrized)
    """
    if horizon < 1:
        raise ValueError(f"LQR: horizon must be >= 1, got {horizon}")
    As, Bs = _stack(A, horizon, "A"), _stack(B, horizon, "B")
    nx, nu = As.shape[-1], Bs.shape[-1]
    Q, R, Qf = (np.asarray(M, dtype=float) for M in (Q, R, Qf))
    _check_square("Q", Q, nx)
    _check_square("Qf", Qf, nx)
    _check_square("R", R, nu)
    Nm = np.zeros((nx, nu)) if N is None else np.asarray(N, dtype=float)
    P = np.empty((horizon + 1, nx, nx))
    K = np.empty((horizon, nu, nx))
    P[horizon] = Qf
    for t in range(horizon - 1, -1, -1):
        Pn, At, Bt = P[t + 1], As[t], Bs[t]
        Quu = R + Bt.T @ Pn @ Bt
        Qux = Nm.T + Bt.T @ Pn @ At
        try:
            K[t] = -scipy.linalg.solve(Quu, Qux, assume_a="pos")
        except np.linalg.LinAlgError as exc:
            raise ValueError(f"LQR: R + B'PB is not positive definite at t={t}: {exc}") from exc
        Pt = Q + At.T @ Pn @ At + Qux.T @ K[t]
        P[t] = 0.5 * (Pt + Pt.T)
    return LqrSolution(K=K, P=P)


def infinite_horizon(A, B, Q, R, N=None) -> tuple[np.ndarray, np.ndarray]:
    """Stationary discrete LQR via ``scipy.linalg.solve_discrete_are``.

    Returns ``(K [nu, nx], P [nx, nx])`` with ``u = K x`` and value ``1/2 x' P x``.
    Raises ValueError naming the problem when (A, B) is not stabilizable or the DARE has no solution.
    """
    A, B, Q, R = (np.asarray(M, dtype=float) for M in (A, B, Q, R))
    nx, nu = A.shape[0], B.shape[1]
    _check_square("A", A, nx)
    _check_square("Q", Q, nx)
    _check_square("R", R, nu)
    if B.shape[0] != nx:
        raise ValueError(f"LQR: B must have {nx} rows to match A, got shape {B.shape}")
    try:
        P = scipy.linalg.solve_discrete_are(A, B, Q, R, s=N)
    except (np.linalg.LinAlgError, ValueError) as exc:
        raise ValueError(f"LQR: discrete algebraic Riccati equation has no stabilizing solution: {exc}") from exc
    Nm = np.zeros((nx, nu)) if N is None else np.asarray(N, dtype=float)
    K = -np.linalg.solve(R + B.T @ P @ B, Nm.T + B.T @ P @ A)
    return K, 0.5 * (P + P.T)


def closed_loop_is_stable(A, B, K) -> bool:
    """True when the spectral radius of ``A + B K`` is below 1 (discrete-time stability)."""
    eig = np.linalg.eigvals(np.asarray(A) + np.asarray(B) @ np.asarray(K))
    return bool(np.max(np.abs(eig)) < 1.0)
