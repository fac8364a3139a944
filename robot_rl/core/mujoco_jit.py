"""Optional numba kernels that drive MuJoCo's C API directly for :class:`~robot_rl.control.dynamics.MujocoDynamics`.

An iLQR iteration on a small model is dominated by per-step Python around cheap C calls: ``mj_setState``, a control
write and one ``mjd_transitionFD`` per step for the Jacobians, and ``mj_step`` + ``mj_getState`` per step for the
closed-loop forward pass (about 2-3 us of interpreter work per step next to 3-9 us of physics on the cart-pole).
These kernels run the same sequence of the same C functions from compiled code: ``libmujoco`` (the very library the
``mujoco`` bindings loaded, checked by version) is called through ``ctypes`` function pointers from numba
``nopython`` loops on the models' and datas' raw addresses (``MjModel._address``). The results are those of the
Python loops bit for bit on one-actuator models (same calls, same order, same float operations; tested), and within
rounding otherwise (the feedback product's summation order).

numba is OPTIONAL (``pip install numba==0.68.1``): without it, or with a libmujoco that cannot be matched,
``AVAILABLE`` is False and :class:`MujocoDynamics` keeps its Python loops. The kernels compile on first use (about
1 s per process: they embed the function pointers of this process, so numba cannot cache them on disk) and release
the GIL while they run, so a planner thread does not hold up the control loop (a ``MujocoDynamics`` and its
MjData belong to one thread at a time, as with the Python loops).

Two differences from the bindings: the kernels do not check array shapes (``MujocoDynamics`` validates them before
every call), and a MuJoCo *fatal* error inside them (``mju_error``, e.g. an arena too small for the contacts) is not
turned into ``mujoco.FatalError``: MuJoCo's default handler prints it and ends the process. Use
``backend="python"`` (``MpcConfig.dynamics_backend``, mpc_node ``dynamics_backend:=python``) to get the exception.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import threading
from pathlib import Path

import mujoco
import numpy as np

_lock = threading.Lock()
_kernels = None
_reason: str | None = None


def _find_library() -> ctypes.CDLL:
    """The libmujoco shared library next to the bindings, if its version is the bindings' version."""
    pkg = Path(mujoco.__file__).parent
    candidates = sorted(pkg.glob("libmujoco.so*")) + sorted(pkg.glob("libmujoco*.dylib"))
    if not candidates:
        raise OSError(f"no libmujoco shared library in {pkg}")
    if not hasattr(mujoco.MjModel, "_address") or not hasattr(mujoco.MjData, "_address"):
        raise OSError("these mujoco bindings do not expose MjModel._address / MjData._address")
    # RTLD_NOLOAD: only the copy the bindings already loaded (a second copy would have its own global state)
    lib = ctypes.CDLL(str(candidates[0]), mode=os.RTLD_NOLOAD | os.RTLD_NOW)
    lib.mj_versionString.restype = ctypes.c_char_p
    got, want = lib.mj_versionString().decode(), mujoco.mj_versionString()
    if got != want:
        raise OSError(f"{candidates[0]} is MuJoCo {got}, the bindings are {want}")
    return lib


def _check() -> str | None:
    if importlib.util.find_spec("numba") is None:
        return "numba is not installed (pip install numba==0.68.1)"
    try:
        _find_library()
    except OSError as exc:
        return f"libmujoco not usable through ctypes: {exc}"
    return None


_reason = _check()
AVAILABLE = _reason is None
"""True when numba and a matching libmujoco are present (the kernels themselves compile on first use)."""


def unavailable_reason() -> str | None:
    """Why the kernels cannot be used (None when they can)."""
    return _reason


def _compile():
    import numba

    lib = _find_library()
    ptr = ctypes.c_size_t  # pointers passed as integers: the same register in the C ABI
    step, fd = lib.mj_step, lib.mjd_transitionFD
    set_state, get_state = lib.mj_setState, lib.mj_getState
    step.argtypes, step.restype = [ptr, ptr], None
    fd.argtypes, fd.restype = [ptr, ptr, ctypes.c_double, ctypes.c_uint8, ptr, ptr, ptr, ptr], None
    set_state.argtypes, set_state.restype = [ptr, ptr, ptr, ctypes.c_uint], None
    get_state.argtypes, get_state.restype = [ptr, ptr, ptr, ctypes.c_uint], None

    @numba.njit(nogil=True, cache=False)
    def jacobians(mp, dp, X, U, ctrl, As, Bs, xspec, eps, fs):  # pragma: no cover - runs compiled
        # MujocoDynamics.jacobians' loop: per step set the state and control, one FD call, then per further
        # substep one mj_step and one FD call (control held). As [fs, T, nx, nx], Bs [fs, T, nx, nu] (C order).
        for t in range(U.shape[0]):
            set_state(mp, dp, X[t].ctypes.data, xspec)
            for i in range(U.shape[1]):
                ctrl[i] = U[t, i]
            fd(mp, dp, eps, 0, As[0, t].ctypes.data, Bs[0, t].ctypes.data, 0, 0)
            for j in range(1, fs):
                step(mp, dp)
                fd(mp, dp, eps, 0, As[j, t].ctypes.data, Bs[j, t].ctypes.data, 0, 0)

    @numba.njit(nogil=True, cache=False)
    def closed_loop(mp, dp, x0, c, K, S, Un, ctrl, xspec, tspec, fs, lo, hi):  # pragma: no cover - runs compiled
        # MujocoDynamics.closed_loop's loop: u_t = clip(c_t + K_t x_t) with the sum in the Python loop's order
        # (0 + 0 * time + K_t0 x_t0 + ...), fs mj_steps, then S[t+1] = [time, x].
        set_state(mp, dp, x0.ctypes.data, xspec)
        nu, nx = K.shape[1], K.shape[2]
        for t in range(c.shape[0]):
            for i in range(nu):
                acc = 0.0 + 0.0 * S[t, 0]
                for j in range(nx):
                    acc += K[t, i, j] * S[t, 1 + j]
                u = c[t, i] + acc
                if u > hi[i]:
                    u = hi[i]
                elif u < lo[i]:
                    u = lo[i]
                Un[t, i] = u
                ctrl[i] = u
            for _ in range(fs):
                step(mp, dp)
            get_state(mp, dp, S[t + 1].ctypes.data, tspec)

    return jacobians, closed_loop


def kernels():
    """``(jacobians, closed_loop)`` compiled kernels (compiled on the first call, thread-safe).

    Raises RuntimeError when they are unavailable or fail to build (e.g. a broken numba install); after a failure
    ``AVAILABLE`` is False and :func:`unavailable_reason` says why.
    """
    global _kernels, _reason, AVAILABLE
    if not AVAILABLE:
        raise RuntimeError(f"robot_rl.core.mujoco_jit: unavailable: {_reason}")
    with _lock:
        if _kernels is None:
            try:
                _kernels = _compile()
            except Exception as exc:  # noqa: BLE001 - any failure to import numba or compile: report and stop using it
                _reason, AVAILABLE = f"building the kernels failed: {type(exc).__name__}: {exc}", False
                raise RuntimeError(f"robot_rl.core.mujoco_jit: {_reason}") from exc
    return _kernels


def warm_up() -> float:
    """Compile both kernels on a one-body model now (seconds taken), e.g. before a node starts its control loop."""
    import time

    t0 = time.perf_counter()
    jac, loop = kernels()
    m = mujoco.MjModel.from_xml_string(
        "<mujoco><worldbody><body><joint name='j' type='slide'/><geom size='.1'/></body></worldbody>"
        "<actuator><motor joint='j' ctrlrange='-1 1'/></actuator></mujoco>")
    d = mujoco.MjData(m)
    xspec = int(mujoco.mjtState.mjSTATE_QPOS | mujoco.mjtState.mjSTATE_QVEL | mujoco.mjtState.mjSTATE_ACT)
    tspec = int(mujoco.mjtState.mjSTATE_TIME) | xspec
    X, U = np.zeros((2, 2)), np.zeros((1, 1))
    jac(m._address, d._address, X, U, d.ctrl, np.empty((1, 1, 2, 2)), np.empty((1, 1, 2, 1)), xspec, 1e-6, 1)
    loop(m._address, d._address, X[0].copy(), U, np.zeros((1, 1, 2)), np.zeros((2, 3)), np.empty((1, 1)), d.ctrl,
         xspec, tspec, 1, np.array([-1.0]), np.array([1.0]))
    return time.perf_counter() - t0
