"""Optional numba kernel of the one-actuator iLQR backward pass (``IlqrSettings.backend``).

The numpy backward pass (:func:`robot_rl.control.ilqr.backward_pass`) costs a few small array ops per timestep,
which dominate for a 4-state model; compiled, the same recursion is ~15x faster. numba is an OPTIONAL dependency:
without it ``backend="auto"`` uses numpy. The kernel is compiled on first use (~2 s; ``cache=True`` keeps the machine
code in ``__pycache__`` for the next process, ~0.2 s to load) and releases the GIL while it runs. When numba is
installed but cannot build the kernel (a broken install, an unsupported CPU), the first use warns once
(RuntimeWarning naming the cause) and iLQR continues on the numpy recursion: same results, slower.

The math is :func:`robot_rl.control.ilqr._backward_pass_one_control`'s (Tassa 2012 eq. 11, Tassa 2014 clamping):
``Q_uu = l_uu + B'Vxx B``, ``k = -Q_u / (Q_uu + mu)``; a clamped step has ``K = 0``.
"""

from __future__ import annotations

import importlib.util
import threading
import warnings

import numpy as np

AVAILABLE = importlib.util.find_spec("numba") is not None
"""True when numba can be imported (nothing is imported until the kernel is first needed)."""

_lock = threading.Lock()
_compiled = None
_reason: str | None = None
_warned = False


def _recursion(A, B, lx, lu, lxx, luu, lux, lo, hi, mu, boxed, K, k):  # pragma: no cover - runs compiled
    """Backward recursion for one control. ``A [T,nx,nx]``, ``B [T,nx,1]``, ``lx [T+1,nx]``, ``lu [T,1]``,
    ``lxx [T+1,nx,nx]``, ``luu [T,1,1]``, ``lux [T,1,nx]``, step bounds ``lo, hi [T]``; writes ``K [T,1,nx]``,
    ``k [T,1]``. Returns ``(ok, dV1, dV2)``; ``ok`` False when ``Q_uu + mu <= 0``.
    """
    T, nx = A.shape[0], A.shape[1]
    Vxx = lxx[T].copy()
    Vx = lx[T].copy()
    VA = np.empty((nx, nx))
    VB = np.empty(nx)
    Qxx = np.empty((nx, nx))
    Qx = np.empty(nx)
    Qux = np.empty(nx)
    dV1 = 0.0
    dV2 = 0.0
    for t in range(T - 1, -1, -1):
        for i in range(nx):  # VA = Vxx A, VB = Vxx B
            s = 0.0
            for j in range(nx):
                s += Vxx[i, j] * B[t, j, 0]
            VB[i] = s
            for c in range(nx):
                s = 0.0
                for j in range(nx):
                    s += Vxx[i, j] * A[t, j, c]
                VA[i, c] = s
        quu = luu[t, 0, 0]
        qu = lu[t, 0]
        for j in range(nx):
            quu += B[t, j, 0] * VB[j]
            qu += B[t, j, 0] * Vx[j]
        for c in range(nx):
            s = lux[t, 0, c]
            sx = lx[t, c]
            for j in range(nx):
                s += B[t, j, 0] * VA[j, c]
                sx += A[t, j, c] * Vx[j]
            Qux[c] = s
            Qx[c] = sx
            for r in range(nx):
                s = lxx[t, r, c]
                for j in range(nx):
                    s += A[t, j, r] * VA[j, c]
                Qxx[r, c] = s
        h = quu + mu
        if not h > 0:
            return False, 0.0, 0.0
        kt = -qu / h
        if boxed and not (lo[t] < kt < hi[t]):  # clamped control: no feedback, du = k
            kt = min(max(kt, lo[t]), hi[t])
            for c in range(nx):
                K[t, 0, c] = 0.0
                Vx[c] = Qx[c] + Qux[c] * kt
                for r in range(nx):
                    Vxx[r, c] = Qxx[r, c]
        else:  # K = -Qux / h; Vx = Qx - s Qux Qu, Vxx = Qxx - s Qux Qux' with s = (2 - Q_uu / h) / h
            sc = (2.0 - quu / h) / h
            for c in range(nx):
                K[t, 0, c] = -Qux[c] / h
                Vx[c] = Qx[c] - sc * Qux[c] * qu
                for r in range(nx):
                    Vxx[r, c] = Qxx[r, c] - sc * Qux[r] * Qux[c]
        for r in range(nx):
            for c in range(r):
                v = 0.5 * (Vxx[r, c] + Vxx[c, r])
                Vxx[r, c] = v
                Vxx[c, r] = v
        k[t, 0] = kt
        dV1 += kt * qu
        dV2 += 0.5 * kt * kt * quu
    return True, dV1, dV2


def _kernel():
    """The compiled recursion (built on the first call). Raises ImportError without numba, RuntimeError when numba
    is present but fails to build it (after which ``AVAILABLE`` is False and :func:`unavailable_reason` says why).
    """
    global _compiled, _reason, AVAILABLE
    with _lock:
        if _compiled is None:
            if not AVAILABLE:
                if _reason is not None:
                    raise RuntimeError(f"robot_rl.control.ilqr_jit: {_reason}")
                raise ImportError("iLQR backend 'numba' needs the numba package (pip install numba==0.68.1)")
            try:
                import numba

                fn = numba.njit(cache=True, nogil=True)(_recursion)
                fn(*_tiny_problem())  # numba compiles lazily: build (or load from the disk cache) now
                _compiled = fn
            except Exception as exc:  # noqa: BLE001 - a broken numba install: report and stop using it
                _reason, AVAILABLE = f"building the kernel failed: {type(exc).__name__}: {exc}", False
                raise RuntimeError(f"robot_rl.control.ilqr_jit: {_reason}") from exc
    return _compiled


def unavailable_reason() -> str | None:
    """Why the kernel cannot be used (None while it can, or has not failed yet)."""
    if _reason is None and not AVAILABLE:
        return "numba is not installed (pip install numba==0.68.1)"
    return _reason


def usable() -> bool:
    """Build the kernel if needed; False (with one RuntimeWarning naming the cause) when it cannot be built, so the
    caller runs the numpy recursion instead.
    """
    global _warned
    if _compiled is not None:
        return True
    try:
        _kernel()
        return True
    except (ImportError, RuntimeError) as exc:
        if not _warned:
            _warned = True
            warnings.warn(f"{exc}; the iLQR backward pass runs on numpy instead", RuntimeWarning, stacklevel=3)
        return False


def _tiny_problem() -> tuple:
    z = np.zeros
    return (z((2, 4, 4)), z((2, 4, 1)), z((3, 4)), z((2, 1)), z((3, 4, 4)), np.ones((2, 1, 1)), z((2, 1, 4)),
            np.full(2, -1.0), np.ones(2), 0.0, True, z((2, 1, 4)), z((2, 1)))


def warm_up() -> float:
    """Compile (or load from the disk cache) the kernel now, on a 2-step problem; returns the seconds it took.

    Called by :class:`robot_rl.control.mpc.IlqrPlanner` at construction so the first replan is not the one that
    pays for the compilation. A kernel that cannot be built warns once (see :func:`usable`) instead of raising.
    """
    import time

    t0 = time.perf_counter()
    usable()
    return time.perf_counter() - t0


def backward_pass_one_control(A, B, exp, U, mu, u_min, u_max, boxed: bool):
    """Compiled ``backward_pass`` for ``nu = 1``: ``(K [T,1,nx], k [T,1], dV (2,))`` or None (not PD)."""
    T, nx, _ = B.shape
    c = np.ascontiguousarray
    K, k = np.empty((T, 1, nx)), np.empty((T, 1))
    lo, hi = c((u_min - U)[:, 0], float), c((u_max - U)[:, 0], float)
    ok, dV1, dV2 = _kernel()(c(A, float), c(B, float), c(exp.lx, float), c(exp.lu, float), c(exp.lxx, float),
                             c(exp.luu, float), c(exp.lux, float), lo, hi, float(mu), bool(boxed), K, k)
    return (K, k, np.array([dV1, dV2])) if ok else None
