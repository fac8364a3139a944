"""Sampling-based trajectory optimization over batched rollouts: predictive sampling, CEM, MPPI.

``solve(dynamics, cost, x0, U0, settings, rng=..., deadline=...) -> Solution`` (same ``Solution`` as iLQR, with zero
feedback gains). Each iteration draws ``num_samples`` control sequences around the current mean, rolls them all out
in one ``dynamics.rollout`` call (``mujoco.rollout`` multi-threaded over a list of models, or one array op per step
for a learned model), scores them with ``cost.total`` and aggregates over the ``M`` scenarios (randomized models or
ensemble particles): ``mean`` (expected cost) or ``max`` (worst case) — randomization-robust scoring.

* ``predictive``: predictive sampling (Howell et al. 2022, "Predictive Sampling: Real-time Behaviour Synthesis with
  MuJoCo"): Gaussian perturbations of the nominal plan, keep the best (the nominal is a candidate, so the cost never
  increases).
* ``cem``: cross-entropy method (Rubinstein 1999; as used by PETS, Chua et al. 2018): refit mean and std to the
  ``num_elites`` best samples, smoothed ``new = smoothing * old + (1 - smoothing) * elite``.
* ``mppi``: model predictive path integral (Williams et al. 2017): mean += sum_i w_i eps_i with
  ``w = softmax(-(c - c_min) / lambda)``; ``lambda = temperature * (std of the finite costs)`` makes the temperature
  scale-free.

Noise is in the actuator's units: ``noise_std`` is a fraction of half the control range (or absolute for unlimited
controls). All samples are clipped to the control limits before rollout. Two settings make a few samples enough on
a many-joint robot (the Panda: 8 samples per replan, docs/control.md):

* ``knots=K`` (``K >= 1``) draws the noise at K knots spread over the horizon and interpolates it linearly in between
  (MJPC's spline parameterization; ``K = 1``: one constant offset): a smooth perturbation in ``K x nu`` numbers
  instead of ``T x nu`` (white noise per step averages out through stiff servos). With ``K >= 2`` the first knot
  (the current step) is not perturbed, so the command continues the warm-started plan without a jump at each
  replan (on the Panda, jumps of a few centirad every 20 ms made its servos overshoot the datasheet's joint speed
  between control steps, where the plan's cost cannot see it).
* ``noise_scales=(1, 0.3, 0.1)``: sample ``i`` draws ``noise_std x noise_scales[i mod len]``, a search at several
  scales at once: the coarse samples move the plan far, the fine ones settle it within millimetres (one scale
  either stalls far from the goal or never settles).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from robot_rl.control.ilqr import Solution


@dataclass(frozen=True)
class SamplingSettings:
    """Sampling planner settings."""

    method: Literal["predictive", "cem", "mppi"] = "cem"
    """Planner (module docstring)."""
    num_samples: int = 64
    """Control sequences per iteration (including the current mean)."""
    iterations: int = 3
    """Iterations per solve (stops early at the wall-clock deadline)."""
    noise_std: float = 0.3
    """Sampling std as a fraction of half the control range (absolute for unlimited controls)."""
    min_std: float = 0.02
    """CEM: lower bound on the std (same units as noise_std)."""
    num_elites: int = 8
    """CEM: elite count."""
    smoothing: float = 0.1
    """CEM: weight of the old mean/std in the update (momentum)."""
    temperature: float = 0.3
    """MPPI: lambda as a multiple of the std of the sample costs."""
    knots: int = field(default=0, metadata={"hash": "unless_default"})
    """Noise drawn at this many knots over the horizon and interpolated linearly (module docstring); 0 = independent
    noise at every step."""
    noise_scales: tuple[float, ...] = field(default=(1.0,), metadata={"hash": "unless_default"})
    """Per-sample multipliers of ``noise_std``, cycled over the samples (module docstring): several scales search far
    and settle precisely at once."""
    scenario_aggregate: Literal["mean", "max"] = "mean"
    """How costs over the M scenarios combine: expected (mean) or worst case (max)."""
    time_budget_s: float = field(default=float("inf"), metadata={"allow_nonfinite": True})
    """Wall-clock budget per solve [s] (anytime)."""

    def __post_init__(self):
        if self.num_samples < 2 or self.iterations < 1:
            raise ValueError("num_samples must be >= 2 and iterations >= 1")
        if not 1 <= self.num_elites <= self.num_samples:
            raise ValueError(f"num_elites must be in [1, num_samples={self.num_samples}], got {self.num_elites}")
        if not 0 <= self.smoothing < 1 or self.noise_std <= 0 or self.temperature <= 0:
            raise ValueError("need 0 <= smoothing < 1, noise_std > 0, temperature > 0")
        if self.knots < 0:
            raise ValueError(f"knots must be >= 0 (0 = independent noise per step), got {self.knots}")
        if not self.noise_scales or not all(np.isfinite(v) and v > 0 for v in self.noise_scales):
            raise ValueError(f"noise_scales must be positive numbers (at least one), got {list(self.noise_scales)}")


def _scale(u_min: np.ndarray, u_max: np.ndarray) -> np.ndarray:
    half = 0.5 * (u_max - u_min)
    return np.where(np.isfinite(half), half, 1.0)


def initial_distribution(x0, U0, u_min: np.ndarray, u_max: np.ndarray, nx: int, nu: int, noise_std: float,
                         prev_std: np.ndarray | None, where: str):
    """Checked start of a sampling search: ``(x0 [nx], mean [T, nu] = clip(U0), std [T, nu], scale [nu])``.

    ``std`` is ``noise_std x`` half the control range, or a warm-started ``prev_std [T, nu]`` re-inflated to at least
    half of that (so a collapsed distribution can move again). ``where`` names the caller in the error.
    """
    x0 = np.asarray(x0, float)
    mean = np.clip(np.asarray(U0, float), u_min, u_max)
    if mean.ndim != 2 or mean.shape[1] != nu or x0.shape != (nx,):
        raise ValueError(f"{where}: expected x0 [{nx}] and U0 [T, {nu}], got {x0.shape}, {np.shape(U0)}")
    T = mean.shape[0]
    scale = _scale(u_min, u_max)
    std = np.broadcast_to(noise_std * scale, (T, nu)).copy()
    if prev_std is not None and prev_std.shape == (T, nu):
        std = np.maximum(prev_std, 0.5 * noise_std * scale)
    return x0, mean, std, scale


def knot_matrix(T: int, knots: int) -> np.ndarray:
    """``W [T, K]``: control step ``t`` as the linear interpolation of ``K`` knots at ``linspace(0, T-1, K)``
    (``K = 1``: every step equals the one knot).
    """
    if knots < 1:
        raise ValueError(f"knots must be >= 1 (0 = no knots: one free control per step), got {knots}")
    if knots == 1:
        return np.ones((T, 1))
    at = np.linspace(0.0, T - 1, knots)
    W = np.zeros((T, knots))
    t = np.arange(T)
    k = np.clip(np.searchsorted(at, t, side="right") - 1, 0, knots - 2)
    frac = (t - at[k]) / (at[k + 1] - at[k])
    W[t, k], W[t, k + 1] = 1.0 - frac, frac
    return W


def score(dynamics, cost, x0: np.ndarray, U: np.ndarray, aggregate: str = "mean") -> tuple[np.ndarray, np.ndarray]:
    """Roll out ``U [N, T, nu]`` and return ``(costs [N], X [M, N, T+1, nx])``; diverged samples cost ``inf``."""
    X = dynamics.rollout(x0, U)
    c = cost.total(X, U[None])  # [M, N]
    return (c.max(axis=0) if aggregate == "max" else c.mean(axis=0)), X


def solve(dynamics, cost, x0, U0, settings: SamplingSettings = SamplingSettings(), *,
          rng: np.random.Generator | None = None, deadline: float | None = None, state: dict | None = None) -> Solution:
    """Optimize ``U [T, nu]`` from ``x0 [nx]`` by sampling.

    ``rng``: randomness source (default: a fresh seeded generator, seed 0). ``deadline``: absolute
    ``time.perf_counter()`` value. ``state``: optional dict carried between calls (CEM keeps its std there, for MPC
    warm starts).

    One function on purpose: it is the MPC replan, run every control period against a deadline, and each iteration
    updates the sampling distribution (mean, std) and the best plan so far together for all three methods; as helpers,
    that state would be passed in and returned again on every iteration.
    """
    t_start = time.perf_counter()
    if deadline is None:
        deadline = t_start + settings.time_budget_s
    rng = np.random.default_rng(0) if rng is None else rng
    lo, hi = dynamics.u_min, dynamics.u_max
    prev_std = state.get("std") if state is not None and settings.method == "cem" else None
    x0, mean, std, scale = initial_distribution(x0, U0, lo, hi, dynamics.nx, dynamics.nu, settings.noise_std,
                                                prev_std, "sampling.solve")
    T, nu = mean.shape
    n = settings.num_samples
    knots = settings.knots
    if knots > T:
        raise ValueError(f"sampling.solve: knots={knots} exceeds the horizon T={T}")
    W = knot_matrix(T, knots) if knots else None
    at = np.rint(np.linspace(0, T - 1, knots)).astype(int) if knots else None  # the knots' steps (their std)
    scales = (np.resize(np.asarray(settings.noise_scales, float), n) if settings.noise_scales != (1.0,)
              else None)
    best_U, best_X, best_c, history, it = mean, None, np.inf, [], 0
    t_it, last = t_start, 0.0
    for it in range(1, settings.iterations + 1):  # noqa: B007 (reported)
        if W is None:
            eps = rng.standard_normal((n, T, nu)) * std
        else:
            z = rng.standard_normal((n, knots, nu)) * std[at]
            if knots > 1:
                z[:, 0] = 0.0  # the current step's knot: the command continues the previous plan without a jump
            eps = np.einsum("tk,nku->ntu", W, z)
        if scales is not None:
            eps *= scales[:, None, None]
        eps[0] = 0.0  # the current mean is always a candidate
        U = np.clip(mean[None] + eps, lo, hi)
        c, X = score(dynamics, cost, x0, U, settings.scenario_aggregate)
        i_best = int(np.argmin(c))
        if c[i_best] < best_c:
            best_c, best_U, best_X = float(c[i_best]), U[i_best], X[0, i_best]
        history.append(best_c)
        if settings.method == "predictive":
            mean = best_U
        elif settings.method == "cem":
            finite = np.isfinite(c)
            if finite.sum() >= settings.num_elites:
                elites = U[np.argsort(c)[: settings.num_elites]]
                a = settings.smoothing
                mean = a * mean + (1 - a) * elites.mean(axis=0)
                std = np.maximum(a * std + (1 - a) * elites.std(axis=0), settings.min_std * scale)
        else:  # mppi
            finite = np.isfinite(c)
            if finite.any():
                cf = np.where(finite, c, np.inf)
                spread = np.std(cf[finite]) if finite.sum() > 1 else 1.0
                lam = settings.temperature * max(spread, 1e-9)
                w = np.exp(-(cf - cf[finite].min()) / lam)
                w /= w.sum()
                mean = np.clip(mean + np.einsum("n,ntu->tu", w, U - mean[None]), lo, hi)
        # anytime: stop when the next iteration, as long as this one, would end past the deadline (the replan
        # then ends within its budget instead of overrunning it by most of an iteration)
        now = time.perf_counter()
        t_it, last = now, now - t_it
        if now + last > deadline:
            break
    # the final mean may beat the best sample (CEM / MPPI average); score it once more when time allows
    # (one rollout: about 1 / num_samples of an iteration)
    if settings.method != "predictive" and time.perf_counter() + last / n < deadline:
        c_mean, X = score(dynamics, cost, x0, mean[None], settings.scenario_aggregate)
        if c_mean[0] < best_c:
            best_c, best_U, best_X = float(c_mean[0]), mean, X[0, 0]
    if state is not None:
        state["std"] = std
    # the chosen plan's trajectory under the first scenario, as rolled out above (no extra rollout)
    X = dynamics.rollout(x0, best_U[None])[0, 0] if best_X is None else best_X
    return Solution(X=X, U=best_U, K=np.zeros((T, nu, dynamics.nx)), k=np.zeros((T, nu)), cost=best_c,
                    iterations=it, converged=False, reason="sampling budget", cost_history=history,
                    solve_time_s=time.perf_counter() - t_start)
