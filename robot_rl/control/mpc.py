"""Receding-horizon controller: a planner thread optimizes, the control loop acts (MuJoCo MPC style).

API (stable; used by the ROS ``mpc_node``; documented in docs/control.md)::

    planner = IlqrPlanner(dynamics, cost, IlqrSettings(max_iterations=2))      # or SamplingPlanner(...)
    mpc = MPCController(planner, MPCSettings(horizon=100, control_period_s=0.02), u_min=..., u_max=...)
    mpc.start()                      # planner thread (or call mpc.replan(x, t_s) yourself: synchronous mode)
    mpc.set_state(x, t_s)            # newest measured state [nx] at time t_s [s] (any clock, same as action's)
    u = mpc.action(x, t_s)           # cheap: u = clip(U[i] + K[i] (x - X[i])), i from the plan's start time
    mpc.stats()                      # solve-time p50/p99/max [ms], deadline misses, fallbacks, errors
    mpc.stop()

Warm start: each replan starts from the previous plan shifted to the new state's time (last control repeated).
Deadlines (docs/reliability.md, scenario 7): a replan has ``replan_budget_s`` of wall-clock time; planners are anytime
(best plan so far when time runs out). A replan that still overruns its budget (e.g. an injected delay) is a deadline
miss: its late result is dropped and ``action`` keeps using the previous plan, time-shifted. After
``max_missed_deadlines`` consecutive misses, or when the plan is older than ``(max_missed_deadlines + 1)
replan_period_s`` (a hung planner) or runs past its horizon, ``action`` returns ``fallback(x)`` (default: zero
command, the safe effort for a force-controlled robot) until a plan arrives in time again.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from robot_rl.control import ilqr, ilqr_jit, sampling
from robot_rl.core import mujoco_jit


@dataclass(frozen=True)
class MPCSettings:
    """Receding-horizon settings."""

    horizon: int = 100
    """Plan length [control steps]."""
    control_period_s: float = 0.02
    """Duration of one plan step [s]; must equal the dynamics' dt."""
    replan_budget_s: float = 0.01
    """Wall-clock budget of one replan [s]; a replan slower than this is a deadline miss."""
    replan_period_s: float = 0.02
    """Expected interval between fresh plans [s] (used to detect a hung planner)."""
    max_missed_deadlines: int = 3
    """Consecutive misses (K) after which the fallback command is used."""
    use_feedback: bool = True
    """Apply the plan's feedback gains K (iLQR); False = open-loop U."""
    delay_steps: int = 0
    """Known actuation delay [control periods] (measured latency). The controller then plans and acts for the state
    predicted ``delay_steps`` ahead with the commands already sent (needs ``planner.dynamics.step``)."""
    stats_window: int = 1000
    """Number of recent solve times kept for the percentiles."""

    def __post_init__(self):
        if self.horizon < 1 or self.max_missed_deadlines < 1 or self.delay_steps < 0:
            raise ValueError("horizon and max_missed_deadlines must be >= 1, delay_steps >= 0")
        if self.control_period_s <= 0 or self.replan_budget_s <= 0 or self.replan_period_s <= 0:
            raise ValueError("control_period_s, replan_budget_s and replan_period_s must be > 0 s")


@dataclass(frozen=True)
class Plan:
    """A plan valid from time ``t0_s``: X [T+1, nx], U [T, nu], K [T, nu, nx]; step i covers
    ``[t0_s + i dt, t0_s + (i+1) dt)``.
    """

    t0_s: float
    dt: float
    X: np.ndarray
    U: np.ndarray
    K: np.ndarray
    cost: float

    def index(self, t_s: float) -> int:
        return int(np.floor((t_s - self.t0_s) / self.dt + 1e-9))

    def shifted(self, t_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Warm start for a plan starting at ``t_s``: ``(X [T+1, nx], U [T, nu], K [T, nu, nx])`` from that time on,
        the last entry repeated.
        """
        i = min(max(self.index(t_s), 0), len(self.U) - 1)

        def shift(a):
            return np.concatenate([a[i:], np.repeat(a[-1:], i, axis=0)])

        return shift(self.X), shift(self.U), shift(self.K)


# --------------------------------------------------------------------------- planner adapters


class IlqrPlanner:
    """iLQR as an MPC planner: ``optimize(x0, U0, deadline) -> Solution``. With the numba backend (``settings.jit``)
    the kernel is compiled (or loaded from its disk cache) here, at construction; so are the compiled MuJoCo loops of
    a ``MujocoDynamics`` with ``backend == "numba"`` (:mod:`robot_rl.core.mujoco_jit`).
    """

    def __init__(self, dynamics, cost, settings: ilqr.IlqrSettings | None = None):
        self.dynamics, self.cost = dynamics, cost
        self.settings = ilqr.IlqrSettings(max_iterations=2) if settings is None else settings
        self._mu = self.settings.mu_init  # carried between replans with settings.carry_mu
        if self.settings.jit and getattr(dynamics, "nu", 0) == 1:  # compile now, not in the first replan
            ilqr_jit.warm_up()
        elif self.settings.jit and self.settings.control_limits == "clamp":
            ilqr_jit.usable_clamped()
        if getattr(dynamics, "backend", None) == "numba":  # MujocoDynamics' compiled loops (not disk-cacheable)
            mujoco_jit.warm_up()

    def optimize(self, x0: np.ndarray, U0: np.ndarray, deadline: float, X_ref=None, K0=None) -> ilqr.Solution:
        settings = self.settings
        if settings.carry_mu:
            settings = dataclasses.replace(settings, mu_init=self._mu)
        sol = ilqr.solve(self.dynamics, self.cost, x0, U0, settings, deadline=deadline, X_ref=X_ref, K0=K0)
        if settings.carry_mu:
            mu = float(sol.mu)  # past mu_max the solve gave up: start the next one afresh
            self._mu = mu if np.isfinite(mu) and mu <= settings.mu_max else self.settings.mu_init
        return sol


class SamplingPlanner:
    """Predictive sampling / CEM / MPPI as an MPC planner (keeps the CEM std between replans)."""

    def __init__(self, dynamics, cost, settings: sampling.SamplingSettings | None = None, *,
                 rng: np.random.Generator | None = None):
        self.dynamics, self.cost = dynamics, cost
        self.settings = sampling.SamplingSettings() if settings is None else settings
        self.rng = np.random.default_rng(0) if rng is None else rng
        self._state: dict = {}

    def optimize(self, x0: np.ndarray, U0: np.ndarray, deadline: float, X_ref=None, K0=None) -> ilqr.Solution:
        return sampling.solve(self.dynamics, self.cost, x0, U0, self.settings, rng=self.rng, deadline=deadline,
                              state=self._state)


def zero_fallback(nu: int) -> Callable[[np.ndarray], np.ndarray]:
    """Fallback returning a zero command ``[nu]`` (no force / torque)."""
    return lambda x: np.zeros(nu)


class HoldFallback:
    """Fallback of a position-controlled robot: hold the joint positions ``x[index]`` (actuator order) measured at
    the first fallback step, latched until a plan acts again (``release``, called by ``MPCController.action``), so
    a servo's steady-state error does not make the hold creep. A zero command would be a move to 0 rad.
    """

    def __init__(self, index):
        self.index = np.asarray(index, dtype=np.intp)
        self.held: np.ndarray | None = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.held is None or not np.all(np.isfinite(self.held)):
            self.held = np.asarray(x, float)[self.index].copy()
        return self.held.copy()

    def release(self) -> None:
        self.held = None


# --------------------------------------------------------------------------- controller


class MPCController:
    """Receding-horizon controller around a planner with ``optimize(x0 [nx], U0 [T, nu], deadline) -> Solution``.

    Args:
        planner: IlqrPlanner, SamplingPlanner or anything with the same ``optimize``.
        settings: MPCSettings.
        u_min, u_max: command limits ``[nu]`` (actuator units); default from ``planner.dynamics``.
        fallback: ``fallback(x [nx]) -> u [nu]`` used without a valid plan (default: zero command; a fallback with
            a ``release()`` method, e.g. :class:`HoldFallback`, is told whenever a plan acts again).
        U_init: initial guess ``[T, nu]`` for the first plan (default zeros).
        clock: wall clock for solve-time accounting and plan staleness (default ``time.perf_counter``); the
            planner itself always gets a ``time.perf_counter()`` deadline.

    """

    def __init__(self, planner, settings: MPCSettings = MPCSettings(), *, u_min=None, u_max=None,
                 fallback: Callable[[np.ndarray], np.ndarray] | None = None, U_init: np.ndarray | None = None,
                 clock: Callable[[], float] = time.perf_counter):
        self.planner, self.settings, self.clock = planner, settings, clock
        dyn = getattr(planner, "dynamics", None)
        self.u_min = np.asarray(u_min if u_min is not None else dyn.u_min, float)
        self.u_max = np.asarray(u_max if u_max is not None else dyn.u_max, float)
        self.nu = len(self.u_min)
        if dyn is not None and abs(dyn.dt - settings.control_period_s) > 1e-9:
            raise ValueError(f"MPCSettings.control_period_s={settings.control_period_s} s does not match the "
                             f"planner dynamics' dt={dyn.dt} s")
        self.fallback = fallback if fallback is not None else zero_fallback(self.nu)
        self._release = getattr(self.fallback, "release", None)
        self._XK_init: tuple[np.ndarray, np.ndarray] | None = None
        self._U_init = (np.zeros((settings.horizon, self.nu)) if U_init is None
                        else np.asarray(U_init, float).reshape(settings.horizon, self.nu))
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self._plan: Plan | None = None
        self._plan_wall = -np.inf  # wall-clock time the current plan was installed
        self._pending: tuple[np.ndarray, float] | None = None
        self._thread: threading.Thread | None = None
        self._running = False
        self._solve_times: deque[float] = deque(maxlen=settings.stats_window)
        self._n = {"replans": 0, "deadline_misses": 0, "consecutive_misses": 0, "fallback_actions": 0,
                   "plan_actions": 0}
        self.last_error: str | None = None
        self.last_solution: ilqr.Solution | None = None
        self._sent: deque[np.ndarray] = deque(maxlen=settings.delay_steps)  # commands not yet applied
        # delay compensation steps the model in the planner thread (replan) and in the control thread (action): the
        # control thread gets its own copy (two threads must never step one MjData)
        self._dynamics = dyn
        self._act_dynamics = dyn.thread_copy() if settings.delay_steps and hasattr(dyn, "thread_copy") else dyn

    def _predict(self, x: np.ndarray, t_s: float, sent: list[np.ndarray], dynamics) -> tuple[np.ndarray, float]:
        """State and time after the commands already sent have been applied (delay compensation), predicted with
        ``dynamics`` (the calling thread's).
        """
        if not self.settings.delay_steps:
            return x, t_s
        missing = self.settings.delay_steps - len(sent)
        for u in [np.zeros(self.nu)] * missing + sent:
            x = dynamics.step(x, u)
        if not np.all(np.isfinite(x)):
            raise FloatingPointError("MPC delay compensation: state prediction diverged")
        return x, t_s + self.settings.delay_steps * self.settings.control_period_s

    def set_initial_guess(self, U: np.ndarray, X: np.ndarray | None = None, K: np.ndarray | None = None) -> None:
        """Controls ``[T, nu]`` used as the warm start of the first plan (e.g. an offline iLQR solve), with that
        solve's states ``X [T+1, nx]`` and gains ``K [T, nu, nx]`` if known: the first replan then rolls the guess
        out in closed loop around ``X`` (``use_feedback``), as every later replan does around the previous plan. An
        open-loop rollout of a plan that holds an unstable system (the cart-pole upright) falls over its horizon,
        and iLQR from there can settle in a plan that lets it fall.
        """
        U = np.asarray(U, float)
        T = self.settings.horizon
        if U.shape != (T, self.nu):
            raise ValueError(f"initial guess must have shape ({T}, {self.nu}), got {U.shape}")
        bad_shape = X is not None and (np.shape(X)[0] != T + 1 or np.shape(K)[:2] != (T, self.nu))
        if (X is None) != (K is None) or bad_shape:
            raise ValueError(f"initial guess: X [{T + 1}, nx] and K [{T}, {self.nu}, nx] go together, got "
                             f"{None if X is None else np.shape(X)} and {None if K is None else np.shape(K)}")
        with self._lock:
            self._U_init = U.copy()
            self._XK_init = None if X is None else (np.array(X, float), np.array(K, float))

    # ---- planning
    def replan(self, x: np.ndarray, t_s: float) -> ilqr.Solution:
        """One warm-started optimization from state ``x [nx]`` measured at ``t_s`` [s] (caller's thread)."""
        with self._lock:
            plan, sent = self._plan, list(self._sent)
        x, t_s = self._predict(np.asarray(x, float), float(t_s), sent, self._dynamics)
        start = self.clock()
        deadline = time.perf_counter() + self.settings.replan_budget_s  # planners take perf_counter deadlines
        if plan is None:
            XK = self._XK_init if self.settings.use_feedback else None
            sol = (self.planner.optimize(x, self._U_init, deadline) if XK is None else
                   self.planner.optimize(x, self._U_init, deadline, X_ref=XK[0], K0=XK[1]))
        else:
            X_ref, U0, K0 = plan.shifted(t_s)
            sol = self.planner.optimize(x, U0, deadline, X_ref=X_ref, K0=K0 if self.settings.use_feedback else None)
        elapsed = self.clock() - start
        with self._lock:
            self._solve_times.append(elapsed)
            self._n["replans"] += 1
            self.last_solution = sol
            if elapsed > self.settings.replan_budget_s or not np.isfinite(sol.cost):
                self._n["deadline_misses"] += int(elapsed > self.settings.replan_budget_s)
                self._n["consecutive_misses"] += 1
                if plan is None and np.isfinite(sol.cost):  # nothing better to act on than a late first plan
                    self._install(sol, t_s)
            else:
                self._n["consecutive_misses"] = 0
                self._install(sol, t_s)
        return sol

    def _install(self, sol: ilqr.Solution, t_s: float) -> None:
        self._plan = Plan(t_s, self.settings.control_period_s, sol.X, sol.U, sol.K, sol.cost)
        self._plan_wall = self.clock()

    def set_state(self, x: np.ndarray, t_s: float) -> None:
        """Hand the newest state to the planner thread (non-blocking; older pending states are dropped)."""
        with self._cv:
            self._pending = (np.array(x, float), float(t_s))
            self._cv.notify()

    def _loop(self) -> None:
        while True:
            with self._cv:
                while self._running and self._pending is None:
                    self._cv.wait(timeout=0.1)
                if not self._running:
                    return
                x, t_s = self._pending
                self._pending = None
            try:
                self.replan(x, t_s)
            except Exception as exc:  # noqa: BLE001 - reported via stats(); action() falls back on a stale plan
                with self._lock:
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    self._running = False
                return

    def start(self) -> None:
        """Start the planner thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="mpc-planner", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop the planner thread and wait for it (up to ``timeout_s``)."""
        with self._cv:
            self._running = False
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    # ---- acting
    def action(self, x: np.ndarray, t_s: float) -> np.ndarray:
        """Command ``u [nu]`` for state ``x [nx]`` at time ``t_s`` [s], clamped to the limits."""
        s = self.settings
        with self._lock:
            plan, misses, plan_wall, sent = self._plan, self._n["consecutive_misses"], self._plan_wall, list(self._sent)
        try:
            x, t_s = self._predict(np.asarray(x, float), float(t_s), sent, self._act_dynamics)
        except FloatingPointError:
            plan = None
        stale = self.clock() - plan_wall > (s.max_missed_deadlines + 1) * s.replan_period_s
        i = plan.index(t_s) if plan is not None else -1
        if plan is None or misses >= s.max_missed_deadlines or stale or not 0 <= i < len(plan.U):
            u = np.asarray(self.fallback(x), float)
            key = "fallback_actions"
        else:
            u = plan.U[i] + plan.K[i] @ (x - plan.X[i]) if s.use_feedback else plan.U[i].copy()
            key = "plan_actions"
            if not np.all(np.isfinite(u)):
                u, key = np.asarray(self.fallback(x), float), "fallback_actions"
            elif self._release is not None:
                self._release()
        u = np.minimum(np.maximum(u, self.u_min), self.u_max)
        with self._lock:
            self._n[key] += 1
            if s.delay_steps:
                self._sent.append(u)
        return u

    @property
    def plan(self) -> Plan | None:
        with self._lock:
            return self._plan

    def stats(self) -> dict:
        """Solve time p50 / p99 / max [ms], counters (replans, deadline_misses, consecutive_misses,
        fallback_actions, plan_actions), last plan cost and last planner error.
        """
        with self._lock:
            times = np.asarray(self._solve_times) * 1e3
            out = dict(self._n)
            out["last_error"] = self.last_error
            out["plan_cost"] = self._plan.cost if self._plan is not None else None
        if len(times):
            out.update(solve_ms_p50=float(np.percentile(times, 50)), solve_ms_p99=float(np.percentile(times, 99)),
                       solve_ms_max=float(times.max()))
        else:
            out.update(solve_ms_p50=None, solve_ms_p99=None, solve_ms_max=None)
        return out
