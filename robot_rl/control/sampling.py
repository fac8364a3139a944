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
controls). All samples are clipped to the control limits before rollout.
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
    best_U, best_c, history, it = mean, np.inf, [], 0
    t_it, last = t_start, 0.0
    for it in range(1, settings.iterations + 1):  # noqa: B007 (reported)
        eps = rng.standard_normal((n, T, nu)) * std
        eps[0] = 0.0  # the current mean is always a candidate
        U = np.clip(mean[None] + eps, lo, hi)
        c, _ = score(dynamics, cost, x0, U, settings.scenario_aggregate)
        i_best = int(np.argmin(c))
        if c[i_best] < best_c:
            best_c, best_U = float(c[i_best]), U[i_best]
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
        c_mean, _ = score(dynamics, cost, x0, mean[None], settings.scenario_aggregate)
        if c_mean[0] < best_c:
            best_c, best_U = float(c_mean[0]), mean
    if state is not None:
        state["std"] = std
    X = dynamics.rollout(x0, best_U[None])[0, 0]
    return Solution(X=X, U=best_U, K=np.zeros((T, nu, dynamics.nx)), k=np.zeros((T, nu)), cost=best_c,
                    iterations=it, converged=False, reason="sampling budget", cost_history=history,
                    solve_time_s=time.perf_counter() - t_start)
