"""Dynamics models for the planners: one small protocol, three implementations.

Every model exposes (state ``x [nx]``, control ``u [nu]`` in the actuator's units, e.g. N for the cart-pole):

* ``nx``, ``nu``, ``dt`` (control period [s]), ``u_min``, ``u_max`` (``[nu]``, may be +-inf);
* ``step(x, u) -> x'`` — the nominal one-control-period transition;
* ``jacobians(X [T+1, nx], U [T, nu]) -> (A [T, nx, nx], B [T, nx, nu])`` linearized along a trajectory;
* ``rollout(x0 [nx], U [N, T, nu]) -> X [M, N, T+1, nx]`` — batched open-loop rollouts over ``M`` scenarios
  (randomized models or ensemble particles; ``M = 1`` for a single model). A rollout that diverges (non-finite
  values, a MuJoCo warning, or ``|x| > max_abs_state``) is NaN from the step it diverged on, which every cost in
  :mod:`robot_rl.control.costs` turns into an infinite cost.

Implementations: :class:`MujocoDynamics` (``mujoco.rollout`` + ``mjd_transitionFD``), :class:`CallableDynamics`
(any batched ``f(X [N, nx], U [N, nu]) -> [N, nx]`` with optional analytic Jacobians, e.g. :func:`linear`), and
:class:`LearnedDynamics` (a batch predictor over particles, e.g. a probabilistic ensemble).
"""

from __future__ import annotations

import copy
import operator
import warnings
from collections.abc import Callable, Sequence

import mujoco
import numpy as np
from mujoco import rollout as mj_rollout

from robot_rl.core import mujoco_jit

DEFAULT_MAX_ABS_STATE = 1e6
_DIVERGENCE_WARNINGS = tuple(int(w) for w in (mujoco.mjtWarning.mjWARN_BADQACC, mujoco.mjtWarning.mjWARN_BADQVEL,
                                              mujoco.mjtWarning.mjWARN_BADQPOS, mujoco.mjtWarning.mjWARN_BADCTRL))


def mark_diverged(X: np.ndarray, max_abs_state: float = DEFAULT_MAX_ABS_STATE) -> np.ndarray:
    """Set every state from the first non-finite / huge one on to NaN. ``X [..., T+1, nx]`` (modified copy)."""
    bad = ~np.all(np.isfinite(X) & (np.abs(X) <= max_abs_state), axis=-1)  # [..., T+1]
    if not bad.any():
        return X
    after = np.cumsum(bad, axis=-1) > 0
    X = X.copy()
    X[after] = np.nan
    return X


def _limits(u_min, u_max, nu: int) -> tuple[np.ndarray, np.ndarray]:
    lo = np.full(nu, -np.inf) if u_min is None else np.broadcast_to(np.asarray(u_min, float), (nu,)).copy()
    hi = np.full(nu, np.inf) if u_max is None else np.broadcast_to(np.asarray(u_max, float), (nu,)).copy()
    if np.any(lo > hi):
        raise ValueError(f"dynamics: control lower limit {lo} exceeds upper limit {hi}")
    return lo, hi


# --------------------------------------------------------------------------- plain callables


class CallableDynamics:
    """Dynamics from a batched transition function ``f(X [N, nx], U [N, nu]) -> X' [N, nx]``.

    ``jacobian(X [T, nx], U [T, nu]) -> (A [T, nx, nx], B [T, nx, nu])`` is optional; without it the Jacobians come
    from central finite differences of ``f`` evaluated in ONE batched call over all timesteps and perturbations.
    """

    def __init__(self, f: Callable, nx: int, nu: int, dt: float, *, jacobian: Callable | None = None,
                 u_min=None, u_max=None, fd_eps: float = 1e-5, max_abs_state: float = DEFAULT_MAX_ABS_STATE):
        if dt <= 0:
            raise ValueError(f"dynamics: dt must be > 0 s, got {dt}")
        self.f, self.nx, self.nu, self.dt = f, int(nx), int(nu), float(dt)
        self._jacobian = jacobian
        self.u_min, self.u_max = _limits(u_min, u_max, self.nu)
        self.fd_eps = fd_eps
        self.max_abs_state = max_abs_state
        self.n_scenarios = 1

    def step(self, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        return np.asarray(self.f(np.asarray(x, float)[None], np.asarray(u, float)[None]))[0]

    def jacobians(self, X: np.ndarray, U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        X, U = np.asarray(X, float)[: len(U)], np.asarray(U, float)
        if self._jacobian is not None:
            return self._jacobian(X, U)
        return fd_jacobians(self.f, X, U, self.fd_eps)

    def rollout(self, x0: np.ndarray, U: np.ndarray) -> np.ndarray:
        U = np.asarray(U, float)
        n, horizon = U.shape[:2]
        X = np.empty((n, horizon + 1, self.nx))
        X[:, 0] = x0
        with np.errstate(all="ignore"):
            for t in range(horizon):
                X[:, t + 1] = self.f(X[:, t], U[:, t])
        return mark_diverged(X, self.max_abs_state)[None]


def fd_jacobians(f: Callable, X: np.ndarray, U: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Central finite differences of a batched ``f`` at all ``T`` points in one call. Returns ``A [T,nx,nx]``,
    ``B [T,nx,nu]``.
    """
    T, nx = X.shape
    nu = U.shape[1]
    n = nx + nu
    Z = np.concatenate([X, U], axis=1)  # [T, n]
    dZ = np.concatenate([np.eye(n), -np.eye(n)]) * eps  # [2n, n]
    Zp = (Z[:, None, :] + dZ[None]).reshape(T * 2 * n, n)
    Y = np.asarray(f(Zp[:, :nx], Zp[:, nx:])).reshape(T, 2, n, nx)
    J = (Y[:, 0] - Y[:, 1]).transpose(0, 2, 1) / (2 * eps)  # [T, nx, n]
    return J[:, :, :nx].copy(), J[:, :, nx:].copy()


def linear(A: np.ndarray, B: np.ndarray, dt: float, *, u_min=None, u_max=None) -> CallableDynamics:
    """Time-invariant linear model ``x' = A x + B u`` with exact Jacobians."""
    A, B = np.asarray(A, float), np.asarray(B, float)
    nx, nu = B.shape

    def f(X, U):
        return X @ A.T + U @ B.T

    def jac(X, U):
        T = len(X)
        return np.broadcast_to(A, (T, nx, nx)).copy(), np.broadcast_to(B, (T, nx, nu)).copy()

    return CallableDynamics(f, nx, nu, dt, jacobian=jac, u_min=u_min, u_max=u_max)


# --------------------------------------------------------------------------- learned models


class LearnedDynamics(CallableDynamics):
    """A learned batch predictor ``predict(X [M, N, nx], U [M, N, nu]) -> X' [M, N, nx]`` over ``M`` particles.

    ``rollout`` propagates ``M = n_particles`` particles per control sequence in one array op per step (so a
    probabilistic ensemble can implement TS-1 / TS-inf inside ``predict``); ``step`` and ``jacobians`` (finite
    differences) use the particle mean, so iLQR can plan on the same model.
    """

    def __init__(self, predict: Callable, nx: int, nu: int, dt: float, *, n_particles: int = 1, u_min=None,
                 u_max=None, fd_eps: float = 1e-4, max_abs_state: float = DEFAULT_MAX_ABS_STATE):
        self.predict = predict
        self.n_particles = int(n_particles)

        def mean_f(X, U):
            return np.asarray(predict(X[None], U[None])).mean(axis=0)

        super().__init__(mean_f, nx, nu, dt, u_min=u_min, u_max=u_max, fd_eps=fd_eps, max_abs_state=max_abs_state)
        self.n_scenarios = self.n_particles

    def rollout(self, x0: np.ndarray, U: np.ndarray) -> np.ndarray:
        U = np.asarray(U, float)
        n, horizon = U.shape[:2]
        M = self.n_particles
        X = np.empty((M, n, horizon + 1, self.nx))
        X[:, :, 0] = x0
        Ut = np.broadcast_to(U[None], (M, *U.shape))
        with np.errstate(all="ignore"):
            for t in range(horizon):
                X[:, :, t + 1] = self.predict(X[:, :, t], Ut[:, :, t])
        return mark_diverged(X, self.max_abs_state)


# --------------------------------------------------------------------------- MuJoCo


def coarse_model(model: mujoco.MjModel, frame_skip: int) -> mujoco.MjModel:
    """A copy of ``model`` whose timestep is ``frame_skip x`` the original's: one physics step per control period.

    A planning model in the MuJoCo MPC style (MJPC plans on its own, coarser timestep): a control period then costs
    one ``mj_step`` and one ``mjd_transitionFD`` call instead of ``frame_skip`` chained ones, at the price of a
    different discretization than the plant's. MuJoCo keeps soft constraints stable by clamping their time
    constants to at least 2 timesteps, so limits / contacts stiffer than that become softer in the copy. The
    original ``model`` is not modified.
    """
    if frame_skip < 1:
        raise ValueError(f"coarse_model: frame_skip must be >= 1, got {frame_skip}")
    m = copy.deepcopy(model)
    m.opt.timestep = model.opt.timestep * frame_skip
    return m


class MujocoDynamics:
    """MuJoCo model as planner dynamics: ``x = [qpos, qvel, act]``, one control period = ``frame_skip`` mj_steps.

    Requires ``nq == nv`` (hinge / slide joints: the state difference used by ``mjd_transitionFD`` is then a plain
    difference) and a non-RK4 integrator (the planner assumes one ``mj_step`` per substep with a held control, and
    ``mjd_transitionFD``'s tangent linearization is only validated here for Euler / implicit integrators).

    Args:
        model: nominal model (used by ``step`` and ``jacobians``).
        frame_skip: physics steps per control period; Jacobians are chained over substeps
            (``A = A2 A1``, ``B = A2 B1 + B2``).
        scenario_models: models scored by ``rollout`` (e.g. randomized copies, see
            :func:`robot_rl.control.randomize.perturbed_models`); default ``[model]``. All share model sizes.
        nthread: threads for ``mujoco.rollout`` (0 = calling thread).
        fd_eps: finite-difference step for ``mjd_transitionFD``.
        coarse: plan on :func:`coarse_model` copies (timestep ``frame_skip x`` the model's, one physics step per
            control period: about ``frame_skip x`` cheaper derivatives and rollouts). ``dt`` is unchanged; then
            ``self.model`` / ``scenario_models`` are the coarse copies and ``self.frame_skip`` is 1. Default False:
            the exact ``frame_skip`` substeps of the simulator.
        backend: ``"auto"`` (default): the compiled loops of :mod:`robot_rl.core.mujoco_jit` for ``jacobians``
            and ``closed_loop`` when numba is installed, else Python loops; ``"python"``: always the Python loops;
            ``"numba"``: the compiled loops or an error. Same C calls in the same order either way (bit-identical
            results on one-actuator models).
        jacobian: ``"chained"`` (default): one ``mjd_transitionFD`` call per physics substep, chained over the
            ``frame_skip`` substeps (the exact linearization of the control period). ``"first_substep"``: one call
            per control period, at its first substep, whose ``A1``, ``B1`` are raised over the held-control substeps
            (``A = A1^fs``, ``B = (I + A1 + ... + A1^(fs-1)) B1``): ``frame_skip x`` fewer FD calls for a
            linearization that freezes the substep Jacobian within one period. Rollouts and forward passes still
            step every substep of the model, so only the iLQR search direction is approximate, never the predicted
            trajectory or its cost (a stiff servo model that the coarse copy cannot integrate: the Panda).

    """

    def __init__(self, model: mujoco.MjModel, frame_skip: int = 1, *,
                 scenario_models: Sequence[mujoco.MjModel] | None = None, nthread: int = 0, fd_eps: float = 1e-6,
                 max_abs_state: float = DEFAULT_MAX_ABS_STATE, coarse: bool = False, backend: str = "auto",
                 jacobian: str = "chained"):
        if model.nq != model.nv:
            raise ValueError(f"MujocoDynamics: needs nq == nv (no free/ball joints), got nq={model.nq} nv={model.nv}")
        if model.opt.integrator == mujoco.mjtIntegrator.mjINT_RK4:
            raise ValueError("MujocoDynamics: the RK4 integrator is not supported (use Euler or implicitfast)")
        if frame_skip < 1:
            raise ValueError(f"MujocoDynamics: frame_skip must be >= 1, got {frame_skip}")
        if backend not in ("auto", "python", "numba"):
            raise ValueError(f"MujocoDynamics: backend must be 'auto', 'python' or 'numba', got {backend!r}")
        if backend == "numba" and not mujoco_jit.AVAILABLE:
            raise ValueError(f"MujocoDynamics: backend='numba' but {mujoco_jit.unavailable_reason()}")
        if jacobian not in ("chained", "first_substep"):
            raise ValueError(f"MujocoDynamics: jacobian must be 'chained' or 'first_substep', got {jacobian!r}")
        self.jacobian = jacobian
        self.backend = "numba" if backend == "numba" or (backend == "auto" and mujoco_jit.AVAILABLE) else "python"
        self._requested_backend = backend
        self.coarse = bool(coarse)
        self.dt = float(model.opt.timestep) * int(frame_skip)
        self._coarsen = int(frame_skip) if self.coarse else 1
        if self.coarse:
            model, frame_skip = coarse_model(model, frame_skip), 1
        self.model = model
        self.data = mujoco.MjData(model)
        self.frame_skip = int(frame_skip)
        self.nq, self.nv, self.na = model.nq, model.nv, model.na
        self.nx, self.nu = 2 * model.nv + model.na, model.nu
        lo, hi = model.actuator_ctrlrange[:, 0].copy(), model.actuator_ctrlrange[:, 1].copy()
        unlimited = ~model.actuator_ctrllimited.astype(bool)
        lo[unlimited], hi[unlimited] = -np.inf, np.inf
        self.u_min, self.u_max = lo, hi
        self.fd_eps = fd_eps
        self.max_abs_state = max_abs_state
        if scenario_models is None:
            self.scenario_models, self.n_scenarios = [model], 1
        else:
            self.set_scenarios(scenario_models)
        self._pool = mj_rollout.Rollout(nthread=nthread)
        self._nthread = max(1, nthread)
        self._datas = [mujoco.MjData(model) for _ in range(self._nthread)]
        self._spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
        self._nstate = mujoco.mj_stateSize(model, self._spec)
        # full-physics state layout: [time, qpos, qvel, act, ...] (mjtState bit order)
        self._x_slice = slice(1, 1 + self.nx)
        self._xspec = int(mujoco.mjtState.mjSTATE_QPOS | mujoco.mjtState.mjSTATE_QVEL | mujoco.mjtState.mjSTATE_ACT)
        self._tspec = int(mujoco.mjtState.mjSTATE_TIME) | self._xspec  # [time, x]

    def set_scenarios(self, models: Sequence[mujoco.MjModel]) -> None:
        """Replace the models scored by ``rollout``: same sizes and timestep as the model given to the constructor
        (with ``coarse``, each is replaced by its :func:`coarse_model` copy).
        """
        models = list(models)
        for i, m in enumerate(models):
            if (m.nq, m.nv, m.na, m.nu) != (self.model.nq, self.model.nv, self.model.na, self.model.nu):
                raise ValueError(f"MujocoDynamics: scenario model {i} has different sizes than the nominal model")
        if self._coarsen > 1:
            models = [coarse_model(m, self._coarsen) for m in models]
        self.scenario_models = models
        self.n_scenarios = len(models)

    def _kernel(self, i: int):
        """Compiled loop ``i`` (0: jacobians, 1: closed_loop) of :mod:`mujoco_jit`, or None for the Python loops.
        With ``backend="auto"`` a failure to build them (a broken numba) falls back to the Python loops, warning
        once; with ``"numba"`` it raises.
        """
        if self.backend != "numba":
            return None
        try:
            return mujoco_jit.kernels()[i]
        except RuntimeError:
            if self._requested_backend == "numba":
                raise
            warnings.warn(f"MujocoDynamics: compiled loops unavailable ({mujoco_jit.unavailable_reason()}); "
                          "using the Python loops", RuntimeWarning, stacklevel=3)
            self.backend = "python"
            return None

    # ---- state helpers
    def set_data_state(self, d: mujoco.MjData, x: np.ndarray) -> None:
        """Write ``x = [qpos, qvel, act]`` into ``d`` (time untouched)."""
        mujoco.mj_setState(self.model, d, np.asarray(x, float), self._xspec)

    def get_data_state(self, d: mujoco.MjData) -> np.ndarray:
        out = np.empty(self.nx)
        mujoco.mj_getState(self.model, d, out, self._xspec)
        return out

    def _clip(self, u: np.ndarray) -> np.ndarray:
        return np.clip(u, self.u_min, self.u_max)

    def thread_copy(self) -> MujocoDynamics:
        """A copy with its own ``MjData`` (same models and settings), for ``step`` calls
        from another thread while the planner thread uses this one: two threads must never step one ``MjData``
        (MuJoCo then crashes the process).
        """
        c = copy.copy(self)
        c.data = mujoco.MjData(self.model)
        return c

    # ---- protocol
    def step(self, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        d, m = self.data, self.model
        d.time = 0.0
        mujoco.mj_setState(m, d, x, self._xspec)
        d.ctrl[:] = np.minimum(np.maximum(u, self.u_min), self.u_max)
        w = d.warning
        before = sum(w[i].number for i in _DIVERGENCE_WARNINGS)
        for _ in range(self.frame_skip):
            mujoco.mj_step(m, d)
        out = np.empty(self.nx)
        mujoco.mj_getState(m, d, out, self._xspec)
        # divergence: a bad ctrl / qpos / qvel / qacc warning (MuJoCo then resets the data) or non-finite state
        if sum(w[i].number for i in _DIVERGENCE_WARNINGS) != before or not np.isfinite(out).all():
            return np.full(self.nx, np.nan)
        return out

    def closed_loop(self, x0, X, U, K, k, alpha) -> tuple[np.ndarray, np.ndarray]:
        """ILQR forward pass ``u_t = clip(U_t + alpha k_t + K_t (x_t - X_t))`` stepping one MjData in place.

        ``x0 [nx]``, ``X [T+1, nx]``, ``U [T, nu]``, ``K [T, nu, nx]``, ``k [T, nu]``. Returns
        ``(Xn [T+1, nx], Un [T, nu])``; NaN from a diverged step on. The affine part ``U + alpha k - K X`` is one
        array op over the horizon, so a step costs one small product plus the physics; divergence is detected after
        the loop: a MuJoCo reset (bad qpos / qvel / qacc) restarts the data's clock, a bad control (non-finite or
        above ``mjMAXVAL``) is zeroed by MuJoCo, a state is non-finite or above ``max_abs_state``.
        """
        m, d, fs, nx, nu = self.model, self.data, self.frame_skip, self.nx, self.nu
        T = len(U)
        K, k, U, X = (np.asarray(a, float) for a in (K, k, U, X))
        if (np.shape(x0) != (nx,) or X.ndim != 2 or X.shape[0] < T or X.shape[1] != nx or U.shape != (T, nu)
                or k.shape != (T, nu) or K.shape != (T, nu, nx)):
            raise ValueError(f"MujocoDynamics.closed_loop: expected x0 [{nx}], X [>={T}, {nx}], U [T, {nu}], "
                             f"k [T, {nu}], K [T, {nu}, {nx}]; got {np.shape(x0)}, {X.shape}, {U.shape}, {k.shape}, "
                             f"{K.shape}")
        c = U + alpha * k - np.einsum("tij,tj->ti", K, X[:T])  # u_t = c_t + K_t x_t before clipping
        S = np.empty((T + 1, 1 + nx))  # [time, x] after each control step
        S[0, 0], S[0, 1:] = 0.0, x0
        Un = np.empty((T, nu))
        d.time = 0.0
        w = d.warning
        before = sum(w[i].number for i in _DIVERGENCE_WARNINGS)
        ctrl, step, get, spec = d.ctrl, mujoco.mj_step, mujoco.mj_getState, self._tspec
        lo, hi = self.u_min, self.u_max
        loop = self._kernel(1)
        if loop is not None:  # the same calls from compiled code (robot_rl.core.mujoco_jit); shapes checked above
            loop(m._address, d._address, S[0, 1:].copy(), np.ascontiguousarray(c), np.ascontiguousarray(K), S, Un,
                 ctrl, self._xspec, spec, fs, lo, hi)
        elif nu == 1:  # one actuator: the feedback in Python floats (cheaper than array ops on 4-vectors)
            mujoco.mj_setState(m, d, S[0, 1:].copy(), self._xspec)
            cl, l0, h0 = c[:, 0].tolist(), float(lo[0]), float(hi[0])
            Kl = np.concatenate([np.zeros((T, 1)), K[:, 0]], axis=1).tolist()  # [0, K_t]: S rows are [time, x]
            us = []
            for t in range(T):
                u = cl[t] + sum(map(operator.mul, Kl[t], S[t].tolist()))
                u = h0 if u > h0 else (l0 if u < l0 else u)  # NaN passes through: caught after the loop
                ctrl[0] = u
                us.append(u)
                for _ in range(fs):
                    step(m, d)
                get(m, d, S[t + 1], spec)
            Un[:, 0] = us
        else:
            mujoco.mj_setState(m, d, S[0, 1:].copy(), self._xspec)
            for t in range(T):
                u = Un[t]
                np.matmul(K[t], S[t, 1:], out=u)
                u += c[t]
                np.clip(u, lo, hi, out=u)
                ctrl[:] = u
                for _ in range(fs):
                    step(m, d)
                get(m, d, S[t + 1], spec)
        Xn = S[:, 1:]
        bad = np.zeros(T + 1, bool)
        steps = np.arange(1, T + 1) * fs
        bad[1:] = np.abs(S[1:, 0] - steps * m.opt.timestep) > 0.5 * m.opt.timestep  # data was reset
        u_bad = ~np.all(np.isfinite(Un) & (np.abs(Un) <= mujoco.mjMAXVAL), axis=1)
        bad[1:] |= u_bad
        if not bad.any() and sum(w[i].number for i in _DIVERGENCE_WARNINGS) != before:
            bad[1:] = True  # a divergence warning the checks above cannot place: distrust the whole rollout
        if bad.any():
            first = int(np.argmax(bad))
            Xn = Xn.copy()
            Xn[first:] = np.nan
            return mark_diverged(Xn, self.max_abs_state), Un
        return mark_diverged(np.ascontiguousarray(Xn), self.max_abs_state), Un

    def jacobians(self, X: np.ndarray, U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Linearize along ``X [T+1, nx]``, ``U [T, nu]`` with ``mjd_transitionFD`` (forward differences),
        chained over ``frame_skip`` substeps with the control held (or, with ``jacobian="first_substep"``, the first
        substep's raised to the period). Returns ``A [T, nx, nx]``, ``B [T, nx, nu]``.
        """
        m, d = self.model, self.data
        T = len(U)
        U = np.minimum(np.maximum(U, self.u_min), self.u_max)
        eps, spec, fs = self.fd_eps, self._xspec, self.frame_skip
        frozen = self.jacobian == "first_substep" and fs > 1
        if frozen:
            fs = 1
        # substep Jacobians [fs, T, ...]; chained afterwards in batched matmuls (x2 = f(f(x, u), u): control held)
        As = np.empty((fs, T, self.nx, self.nx))
        Bs = np.empty((fs, T, self.nx, self.nu))
        ctrl, fd, setstate, step = d.ctrl, mujoco.mjd_transitionFD, mujoco.mj_setState, mujoco.mj_step
        X = np.ascontiguousarray(X, float)
        if X.ndim != 2 or X.shape[0] < T or X.shape[1] != self.nx or U.shape != (T, self.nu):
            raise ValueError(f"MujocoDynamics.jacobians: expected X [>={T}, {self.nx}] and U [T, {self.nu}], got "
                             f"{X.shape} and {U.shape}")
        jac = self._kernel(0)
        if jac is not None:  # the same calls from compiled code (robot_rl.core.mujoco_jit); shapes checked above
            jac(m._address, d._address, X, np.ascontiguousarray(U, float), ctrl, As, Bs, spec, eps, fs)
        else:
            A0, B0 = list(As[0]), list(Bs[0])
            Ul = U.tolist()
            for t in range(T):
                setstate(m, d, X[t], spec)
                ctrl[:] = Ul[t]
                fd(m, d, eps, False, A0[t], B0[t], None, None)
                for j in range(1, fs):
                    step(m, d)
                    fd(m, d, eps, False, As[j, t], Bs[j, t], None, None)
        A, B = As[0], Bs[0]
        if frozen:  # x_{k+1} = A1 x_k + B1 u over frame_skip substeps with u held
            A1, B1 = A, B
            for _ in range(1, self.frame_skip):
                B = A1 @ B + B1
                A = A1 @ A
            return A, B
        for j in range(1, fs):
            B = As[j] @ B + Bs[j]
            A = As[j] @ A
        return A, B

    def rollout(self, x0: np.ndarray, U: np.ndarray) -> np.ndarray:
        """``X [M, N, T+1, nx]`` for every scenario model ``M`` and control sequence ``U [N, T, nu]``."""
        U = self._clip(np.asarray(U, float))
        n, horizon = U.shape[:2]
        M, fs = self.n_scenarios, self.frame_skip
        d = self._datas[0]
        d.time = 0.0
        self.set_data_state(d, np.asarray(x0, float))
        s0 = np.empty(self._nstate)
        mujoco.mj_getState(self.model, d, s0, self._spec)
        ctrl = np.repeat(U, fs, axis=1)  # [N, T*fs, nu]: control held over the substeps
        ctrl = np.broadcast_to(ctrl[None], (M, *ctrl.shape)).reshape(M * n, horizon * fs, self.nu)
        models = [mm for mm in self.scenario_models for _ in range(n)]
        state, _ = self._pool.rollout(models, self._datas, s0[None], ctrl, skip_checks=False)
        state = state.reshape(M, n, horizon * fs, self._nstate)
        X = np.empty((M, n, horizon + 1, self.nx))
        X[:, :, 0] = x0
        X[:, :, 1:] = state[:, :, fs - 1:: fs, self._x_slice]
        # mujoco.rollout stops advancing time and repeats the last state after a warning (divergence)
        times = state[:, :, fs - 1:: fs, 0]
        expected = self.model.opt.timestep * fs * np.arange(1, horizon + 1)
        stalled = np.abs(times - expected) > 0.5 * self.model.opt.timestep
        X[:, :, 1:][stalled] = np.nan
        return mark_diverged(X, self.max_abs_state)

    def close(self) -> None:
        self._pool.close()
