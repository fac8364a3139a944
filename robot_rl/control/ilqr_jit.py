"""Optional numba kernels of the iLQR backward pass (``IlqrSettings.backend``): one actuator (box-clamped or not), and
several actuators with ``control_limits="clamp"`` (unconstrained steps; :func:`backward_pass_clamped`).

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


def _recursion_clamped(A, B, lx, lu, lxx, luu, lux, mu, K, k):  # pragma: no cover - runs compiled
    """Backward recursion for ``nu`` controls without box constraints (``ilqr.backward_pass`` with
    ``limits="clamp"``): ``Q_uu + mu I`` factored by a hand-written Cholesky (fails when not positive definite or
    not finite), ``[k | K] = -(Q_uu + mu I)^-1 [Q_u | Q_ux]``, value update of Tassa 2012 eq. 11. Shapes as
    ``_recursion`` with ``nu`` for 1; writes ``K [T,nu,nx]``, ``k [T,nu]``; returns ``(ok, dV1, dV2)``.

    One function on purpose: the compiled kernel is the whole backward pass in one native call, its scratch arrays
    allocated once before the loop over the horizon.
    """
    T, nx, nu = B.shape[0], B.shape[1], B.shape[2]
    Vxx = lxx[T].copy()
    Vx = lx[T].copy()
    VA = np.empty((nx, nx))
    VB = np.empty((nx, nu))
    Qxx = np.empty((nx, nx))
    Qx = np.empty(nx)
    Qu = np.empty(nu)
    Quu = np.empty((nu, nu))
    Qux = np.empty((nu, nx))
    L = np.zeros((nu, nu))
    R = np.empty((nu, nx + 1))  # right-hand sides [Q_u | Q_ux], then the solution [k | K] (negated below)
    dV1 = 0.0
    dV2 = 0.0
    for t in range(T - 1, -1, -1):
        for i in range(nx):
            for c in range(nx):
                s = 0.0
                for j in range(nx):
                    s += Vxx[i, j] * A[t, j, c]
                VA[i, c] = s
            for c in range(nu):
                s = 0.0
                for j in range(nx):
                    s += Vxx[i, j] * B[t, j, c]
                VB[i, c] = s
        for i in range(nx):
            s = lx[t, i]
            for j in range(nx):
                s += A[t, j, i] * Vx[j]
            Qx[i] = s
            for c in range(nx):
                s = lxx[t, i, c]
                for j in range(nx):
                    s += A[t, j, i] * VA[j, c]
                Qxx[i, c] = s
        for a in range(nu):
            s = lu[t, a]
            for j in range(nx):
                s += B[t, j, a] * Vx[j]
            Qu[a] = s
            for b in range(nu):
                s = luu[t, a, b]
                for j in range(nx):
                    s += B[t, j, a] * VB[j, b]
                Quu[a, b] = s
            for c in range(nx):
                s = lux[t, a, c]
                for j in range(nx):
                    s += B[t, j, a] * VA[j, c]
                Qux[a, c] = s
        for a in range(nu):  # Cholesky of Q_uu + mu I (lower)
            for b in range(a + 1):
                s = Quu[a, b] + (mu if a == b else 0.0)
                for j in range(b):
                    s -= L[a, j] * L[b, j]
                if a == b:
                    if not s > 0.0 or not np.isfinite(s):
                        return False, 0.0, 0.0
                    L[a, a] = np.sqrt(s)
                else:
                    L[a, b] = s / L[b, b]
        for a in range(nu):
            R[a, 0] = Qu[a]
            for c in range(nx):
                R[a, c + 1] = Qux[a, c]
        for col in range(nx + 1):  # L y = r, L' z = y, solution -z
            for a in range(nu):
                s = R[a, col]
                for j in range(a):
                    s -= L[a, j] * R[j, col]
                R[a, col] = s / L[a, a]
            for a in range(nu - 1, -1, -1):
                s = R[a, col]
                for j in range(a + 1, nu):
                    s -= L[j, a] * R[j, col]
                R[a, col] = s / L[a, a]
        for a in range(nu):
            k[t, a] = -R[a, 0]
            for c in range(nx):
                K[t, a, c] = -R[a, c + 1]
        # Tassa 2012 eq. 11: Vx = Qx + K'Quu k + K'Qu + Qux'k; Vxx = Qxx + K'Quu K + K'Qux + Qux'K
        for a in range(nu):
            s1 = 0.0
            for b in range(nu):
                s1 += Quu[a, b] * k[t, b]
            dV1 += k[t, a] * Qu[a]
            dV2 += 0.5 * k[t, a] * s1
            R[a, 0] = s1 + Qu[a]  # Quu k + Qu
            for c in range(nx):
                s = Qux[a, c]
                for b in range(nu):
                    s += Quu[a, b] * K[t, b, c]
                R[a, c + 1] = s  # Quu K + Qux
        for i in range(nx):
            s = Qx[i]
            for a in range(nu):
                s += K[t, a, i] * R[a, 0] + Qux[a, i] * k[t, a]
            Vx[i] = s
            for c in range(nx):
                s = Qxx[i, c]
                for a in range(nu):
                    s += K[t, a, i] * R[a, c + 1] + Qux[a, i] * K[t, a, c]
                Vxx[i, c] = s
        for i in range(nx):
            for c in range(i):
                m = 0.5 * (Vxx[i, c] + Vxx[c, i])
                Vxx[i, c] = m
                Vxx[c, i] = m
    return True, dV1, dV2


_compiled_clamped = None


def _clamped_kernel():
    """The compiled multi-control recursion (built on the first call; errors as :func:`_kernel`)."""
    global _compiled_clamped, _reason, AVAILABLE
    with _lock:
        if _compiled_clamped is None:
            if not AVAILABLE:
                if _reason is not None:
                    raise RuntimeError(f"robot_rl.control.ilqr_jit: {_reason}")
                raise ImportError("iLQR backend 'numba' needs the numba package (pip install numba==0.68.1)")
            try:
                import numba

                fn = numba.njit(cache=True, nogil=True)(_recursion_clamped)
                z = np.zeros
                fn(z((2, 4, 4)), z((2, 4, 2)), z((3, 4)), z((2, 2)), z((3, 4, 4)), np.ones((2, 2, 2)) + np.eye(2),
                   z((2, 2, 4)), 0.0, z((2, 2, 4)), z((2, 2)))
                _compiled_clamped = fn
            except Exception as exc:  # noqa: BLE001 - a broken numba install: report and stop using it
                _reason, AVAILABLE = f"building the kernel failed: {type(exc).__name__}: {exc}", False
                raise RuntimeError(f"robot_rl.control.ilqr_jit: {_reason}") from exc
    return _compiled_clamped


def usable_clamped() -> bool:
    """:func:`usable` for the multi-control kernel."""
    global _warned
    if _compiled_clamped is not None:
        return True
    try:
        _clamped_kernel()
        return True
    except (ImportError, RuntimeError) as exc:
        if not _warned:
            _warned = True
            warnings.warn(f"{exc}; the iLQR backward pass runs on numpy instead", RuntimeWarning, stacklevel=3)
        return False


def backward_pass_clamped(A, B, exp, mu):
    """Compiled ``backward_pass`` for ``nu >= 1`` with ``limits="clamp"``: ``(K [T,nu,nx], k [T,nu], dV (2,))`` or
    None (``Q_uu + mu I`` not positive definite).
    """
    T, nx, nu = B.shape
    c = np.ascontiguousarray
    K, k = np.empty((T, nu, nx)), np.empty((T, nu))
    ok, dV1, dV2 = _clamped_kernel()(c(A, float), c(B, float), c(exp.lx, float), c(exp.lu, float),
                                     c(exp.lxx, float), c(exp.luu, float), c(exp.lux, float), float(mu), K, k)
    return (K, k, np.array([dV1, dV2])) if ok else None


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
