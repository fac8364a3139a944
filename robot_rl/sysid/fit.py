"""Multi-step re-simulation fit of physical parameters to a logged run (joint states + commands).

The log is cut into windows of ``window`` control steps. Each window is re-simulated open loop from a start state
with the logged commands (delayed by the latency under test), all windows in one batched ``mujoco.rollout`` call,
and the residual is the simulated minus the logged positions and velocities at every control step, divided per
joint by the log's std (angle differences of unlimited hinges are wrapped). Windows, rather than one long open-loop
rollout, keep a chaotic system (a swinging pole) from drifting off the log while still weighing the multi-step
effect of each parameter. ``scipy.optimize.least_squares`` fits the continuous parameters (forward-difference
Jacobian: all perturbed models in one rollout call) for each latency of the grid from the smoothed logged start
states; the latency with the lowest cost wins and is refit with every window's start state as an unknown too (a
logged state is a noisy measurement: starting from it biases the estimates). The std of each estimate is
``sqrt(diag((J^T J)^-1) s^2)`` with the start states profiled out and ``s^2`` the residual variance.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import mujoco
import numpy as np
from mujoco import rollout as mj_rollout
from scipy import sparse
from scipy.optimize import least_squares

from robot_rl.sysid.params import ParamWriter, ResolvedParam

_BAD = 1e3  # residual of a diverged (non-finite) simulated sample


@dataclass
class JointLog:
    """A logged run at the control period: segments of ``(q (T+1, n), qd (T+1, n), ctrl (T, nu))``."""

    segments: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
    joint_names: list[str]

    @property
    def steps(self) -> int:
        return sum(len(c) for _, _, c in self.segments)


@dataclass
class FitResult:
    """Outcome of ``identify`` (plain data, see ``robot_rl.sysid.report`` for the JSON / table)."""

    names: list[str]
    values: np.ndarray
    std: np.ndarray
    physical: np.ndarray
    nominal_physical: np.ndarray
    correlation: np.ndarray
    latency: int
    latency_costs: dict[int, float]
    error_before: dict[str, dict[str, float]]
    error_after: dict[str, dict[str, float]]
    windows: int
    window_steps: int
    notes: list[str] = field(default_factory=list)


def _smoothed(x: np.ndarray, width: int) -> np.ndarray:
    """Savitzky-Golay (cubic) smoothing over ``width`` samples along time (``width`` < 5 or a short log: as is)."""
    from scipy.signal import savgol_filter

    if width < 5 or len(x) < width:
        return x
    return savgol_filter(x, width | 1, 3, axis=0)


class Resimulator:
    """Re-simulates every window of a log from its logged start state, batched over windows and models."""

    def __init__(self, model, frame_skip: int, joint_qadr, joint_dadr, log: JointLog, window: int, max_latency: int,
                 smooth: int = 7):
        """``smooth``: Savitzky-Golay width [samples] for the window start states (< 5: raw)."""
        if window < 1:
            raise ValueError(f"window must be >= 1 control steps, got {window}")
        self.model, self.fs, self.window = model, int(frame_skip), int(window)
        self.qadr, self.dadr = np.asarray(joint_qadr, np.intp), np.asarray(joint_dadr, np.intp)
        n = len(self.qadr)
        x0, start_log, targets, cmd_idx, cmds, offset = [], [], [], [], [], 0
        for q, qd, ctrl in log.segments:
            q0, qd0 = _smoothed(q, smooth), _smoothed(qd, smooth)  # start states: less sensor noise
            for k0 in range(max_latency, len(ctrl) - self.window + 1, self.window):
                x0.append(np.r_[q0[k0], qd0[k0]])
                start_log.append(np.r_[q[k0], qd[k0]])
                targets.append(np.c_[q[k0 + 1:k0 + 1 + self.window], qd[k0 + 1:k0 + 1 + self.window]])
                cmd_idx.append(offset + k0 + np.arange(self.window))
            cmds.append(ctrl)
            offset += len(ctrl)
        if not x0:
            raise ValueError(f"the log has no window of {self.window} control steps (after {max_latency} steps of "
                             f"latency history): record longer segments or use a shorter window")
        self.start = np.asarray(x0)  # (N, 2n) smoothed logged start states: the default / initial guess
        self.start_log = np.asarray(start_log)  # (N, 2n) as logged
        self.targets = np.asarray(targets)  # (N, W, 2n)
        self.cmd_idx = np.asarray(cmd_idx)
        self.cmds = np.concatenate(cmds)
        all_q = np.concatenate([s[0] for s in log.segments])
        all_qd = np.concatenate([s[1] for s in log.segments])
        self.scale = np.maximum(np.r_[all_q.std(0), all_qd.std(0)], 1e-6)
        # unlimited hinges: compare angles modulo 2 pi
        jnt = [int(np.nonzero(model.jnt_qposadr == a)[0][0]) for a in self.qadr]
        self.wrap = np.r_[[int(model.jnt_type[j]) == int(mujoco.mjtJoint.mjJNT_HINGE) and not model.jnt_limited[j]
                           for j in jnt], np.zeros(n, bool)]
        spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
        d = mujoco.MjData(model)
        s0 = np.empty(mujoco.mj_stateSize(model, spec))
        mujoco.mj_getState(model, d, s0, spec)
        self.s0 = s0
        self.cols = np.r_[1 + self.qadr, 1 + model.nq + self.dadr]
        self._pool = mj_rollout.Rollout(nthread=0)
        self._data = [mujoco.MjData(model)]

    @property
    def n_windows(self) -> int:
        return len(self.targets)

    def _wrapped(self, err: np.ndarray) -> np.ndarray:
        err[..., self.wrap] = (err[..., self.wrap] + np.pi) % (2 * np.pi) - np.pi
        return err

    def errors(self, models: list, latency: int, starts: np.ndarray | None = None) -> np.ndarray:
        """Simulated minus logged states ``(len(models), N, W, 2n)`` in physical units (hinge angles wrapped), each
        window started from ``starts`` ``(len(models) or 1, N, 2n)`` (None: the smoothed logged states).
        """
        ctrl = self.cmds[self.cmd_idx - latency]  # (N, W, nu)
        ctrl = np.repeat(ctrl, self.fs, axis=1)
        m, n = len(models), self.n_windows
        starts = np.broadcast_to(self.start if starts is None else starts, (m, n, self.start.shape[1]))
        x0 = np.repeat(self.s0[None], m * n, axis=0)
        x0[:, self.cols] = starts.reshape(m * n, -1)
        batch = [mm for mm in models for _ in range(n)]
        state, _ = self._pool.rollout(batch, self._data, x0, np.tile(ctrl, (m, 1, 1)))
        sim = state[:, self.fs - 1::self.fs][:, :, self.cols].reshape(m, n, self.window, -1)
        return self._wrapped(sim - self.targets[None])

    def residuals(self, models: list, latency: int, starts: np.ndarray | None = None) -> np.ndarray:
        """Scaled, flattened residual vectors ``(len(models), N * W * 2n)``; diverged samples count ``_BAD``. With
        ``starts`` (fitted start states) each window's residual begins with its start state minus the logged one.
        """
        e = self.errors(models, latency, starts)
        if starts is not None:
            s = np.broadcast_to(starts, (len(models), *self.start.shape))
            e = np.concatenate([self._wrapped(s - self.start_log[None])[:, :, None], e], axis=2)
        r = (e / self.scale).reshape(len(models), -1)
        return np.where(np.isfinite(r), r, _BAD)

    def rms_per_joint(self, model, latency: int, joint_names: list[str]) -> dict[str, dict[str, float]]:
        """RMS position and velocity error per joint over all windows, physical units."""
        e = self.errors([model], latency)[0].reshape(-1, 2 * len(joint_names))
        rms = np.sqrt(np.mean(np.where(np.isfinite(e), e, np.nan) ** 2, axis=0))
        n = len(joint_names)
        return {j: {"position_rms": float(rms[i]), "velocity_rms": float(rms[n + i])}
                for i, j in enumerate(joint_names)}

    def close(self) -> None:
        self._pool.close()


class _Problem:
    """``least_squares`` callbacks for one latency: residuals and a batched forward-difference Jacobian.

    With ``fit_start`` the unknowns are the parameters followed by every window's start state (the logged one is a
    noisy measurement: fitting it removes the errors-in-variables bias). A start state moves only its own window,
    so one rollout per state component (all windows perturbed at once) gives those columns, and the Jacobian is
    sparse: the parameter columns dense, a ``(W + 1) 2n x 2n`` block per window.
    """

    def __init__(self, sim: Resimulator, writer: ParamWriter, latency: int, fit_start: bool, theta0: np.ndarray):
        self.sim, self.writer, self.latency, self.fit_start = sim, writer, latency, fit_start
        self.p = p = len(writer.params)
        self.ns = sim.start.shape[1] if fit_start else 0
        self.models = [copy.copy(sim.model) for _ in range(p + 1)]
        lo = np.array([q.lower for q in writer.params])
        hi = np.array([q.upper for q in writer.params])
        n_start = sim.start.size if fit_start else 0
        self.lo, self.hi = np.r_[lo, np.full(n_start, -np.inf)], np.r_[hi, np.full(n_start, np.inf)]
        self.x0 = np.r_[theta0, sim.start.ravel() if fit_start else []]
        self.blocks: tuple[np.ndarray, np.ndarray] | None = None  # last Jacobian: (parameter part, start blocks)
        self._cache: tuple[bytes, np.ndarray] | None = None

    def _split(self, z: np.ndarray):
        return z[:self.p], (z[self.p:].reshape(self.sim.start.shape) if self.fit_start else None)

    def fun(self, z: np.ndarray) -> np.ndarray:
        key = np.asarray(z, float).tobytes()
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        theta, starts = self._split(z)
        self.writer.apply(self.models[0], theta)
        r = self.sim.residuals(self.models[:1], self.latency, None if starts is None else starts[None])[0]
        self._cache = (key, r)
        return r

    def jac(self, z: np.ndarray):
        r0 = self.fun(z)
        theta, starts = self._split(z)
        h = 1e-6 * np.maximum(1.0, np.abs(theta))
        h = np.where(theta + h > self.hi[:self.p], -h, h)
        for j in range(self.p):
            tj = np.array(theta, float)
            tj[j] += h[j]
            self.writer.apply(self.models[j + 1], tj)
        if not self.fit_start:
            r = self.sim.residuals(self.models[1:], self.latency)
            self.blocks = (((r - r0[None]) / h[:, None]).T, None)
            return self.blocks[0]
        hs = 1e-6 * np.maximum(1.0, np.abs(starts).max(0))  # per state component
        pert = np.repeat(starts[None], self.p + self.ns, axis=0)
        for c in range(self.ns):
            pert[self.p + c, :, c] += hs[c]
        r = self.sim.residuals(self.models[1:] + [self.models[0]] * self.ns, self.latency, pert)
        d = r - r0[None]
        jt = (d[:self.p] / h[:, None]).T  # (rows, p)
        n, rows = self.sim.n_windows, len(r0) // self.sim.n_windows
        js = (d[self.p:] / hs[:, None]).reshape(self.ns, n, rows).transpose(1, 2, 0)  # (N, rows per window, 2n)
        self.blocks = (jt, js)
        row = np.arange(n * rows).reshape(n, rows, 1)
        col = self.p + np.arange(n)[:, None, None] * self.ns + np.arange(self.ns)[None, None, :]
        dense = sparse.coo_matrix(jt)
        block = sparse.coo_matrix((js.ravel(), (np.broadcast_to(row, js.shape).ravel(),
                                                np.broadcast_to(col, js.shape).ravel())),
                                  shape=(n * rows, self.p + n * self.ns))
        return (sparse.hstack([dense, sparse.csr_matrix((n * rows, n * self.ns))]) + block).tocsr()


def _fit_one(sim: Resimulator, writer: ParamWriter, latency: int, max_nfev: int, fit_start: bool, theta0):
    prob = _Problem(sim, writer, latency, fit_start, theta0)
    res = least_squares(prob.fun, np.clip(prob.x0, prob.lo, prob.hi), jac=prob.jac, bounds=(prob.lo, prob.hi),
                        method="trf", x_scale="jac", xtol=1e-10, ftol=1e-12, gtol=1e-10, max_nfev=max_nfev,
                        tr_solver="lsmr" if fit_start else "exact")
    prob.jac(res.x)  # the Jacobian blocks at the solution, for the confidence
    return res, prob


def _confidence(res, prob: _Problem) -> tuple[np.ndarray, np.ndarray]:
    """(std per parameter, correlation matrix) from the Jacobian at the solution and the residual variance; the
    start states (when fitted) are profiled out per window (Schur complement of their block-diagonal part).
    """
    jt, js = prob.blocks
    info = jt.T @ jt
    if js is not None:
        n = js.shape[0]
        jt_w = jt.reshape(n, -1, prob.p)
        g = np.einsum("nrc,nrd->ncd", js, js) + 1e-12 * np.eye(prob.ns)
        b = np.einsum("nrc,nrp->ncp", js, jt_w)
        info = info - np.einsum("ncp,ncq->pq", b, np.linalg.solve(g, b))
    dof = max(len(res.fun) - len(res.x), 1)
    cov = np.linalg.pinv(info) * (2.0 * res.cost / dof)
    std = np.sqrt(np.maximum(np.diag(cov), 0.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / np.outer(std, std)
    return std, np.nan_to_num(corr)


def identify(model, frame_skip: int, joint_qadr, joint_dadr, log: JointLog, params: list[ResolvedParam],
             latency_range: tuple[int, int] | None, *, window: int = 25, smooth: int = 7,
             max_nfev: int = 30, fit_start: bool = True, progress: bool = False) -> FitResult:
    """Fit ``params`` (and the latency over ``latency_range``, None: 0) to ``log``; see the module docstring.
    ``fit_start``: also fit every window's start state (see ``_Problem``), else start from the smoothed log.
    """
    from tqdm import tqdm

    lat = latency_range or (0, 0)
    sim = Resimulator(model, frame_skip, joint_qadr, joint_dadr, log, window, lat[1], smooth)
    writer = ParamWriter(model, params)
    x0 = np.array([p.neutral for p in params])
    fits, costs = {}, {}
    try:
        # The latency grid on the logged start states (cheap), then the best latency with the start states fitted.
        with tqdm(total=lat[1] - lat[0] + 1 + fit_start, desc="sysid", unit="fit", disable=not progress,
                  dynamic_ncols=True) as bar:
            for L in range(lat[0], lat[1] + 1):
                fits[L] = _fit_one(sim, writer, L, max_nfev, False, x0)
                costs[L] = float(2.0 * fits[L][0].cost / len(fits[L][0].fun))  # mean squared scaled residual
                bar.set_postfix(latency=L, mse=f"{costs[L]:.3g}")
                bar.update()
            best = min(costs, key=costs.get)
            res, prob = fits[best]
            if fit_start:
                bar.set_postfix(latency=best, stage="start states")
                res, prob = _fit_one(sim, writer, best, max_nfev, True, res.x)
                bar.update()
        theta = res.x[:len(params)]
        std, corr = _confidence(res, prob)
        fitted, nominal = copy.copy(model), copy.copy(model)
        writer.apply(fitted, theta)
        writer.apply(nominal, x0)
        names = list(log.joint_names)
        before = sim.rms_per_joint(nominal, 0, names)
        after = sim.rms_per_joint(fitted, best, names)
        notes = _notes(params, res, corr, best, lat)
        return FitResult([p.name for p in params], theta, std,
                         np.array([writer.physical(p, v) for p, v in zip(params, theta)]),
                         np.array([writer.nominal_value(p) for p in params]), corr, best, costs, before, after,
                         sim.n_windows, sim.window, notes)
    finally:
        sim.close()


def _notes(params, res, corr, latency, lat) -> list[str]:
    """Warnings a reader of the result needs: estimates at a bound, strongly correlated pairs, latency at the edge."""
    notes = []
    for p, v in zip(params, res.x):
        if min(v - p.lower, p.upper - v) <= 1e-6 * max(1.0, abs(v)):
            notes.append(f"{p.name} = {v:.4g} is at a bound [{p.lower:g}, {p.upper:g}]: widen it or check the log")
    for i in range(len(params)):
        for j in range(i + 1, len(params)):
            if abs(corr[i, j]) > 0.95:
                notes.append(f"{params[i].name} and {params[j].name} are correlated {corr[i, j]:+.2f}: the log "
                             "barely tells them apart (excite the robot more, or fix one)")
    if lat[1] > lat[0] and latency == lat[1]:
        notes.append(f"latency {latency} is the top of the searched range {lat[0]}..{lat[1]}: widen it")
    if not res.success:
        notes.append(f"least_squares stopped without converging: {res.message}")
    return notes
