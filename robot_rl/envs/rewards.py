"""Reward shaping helpers (pure functions).

``gaussian``, ``quadratic`` and ``wrapped_angle`` are term building blocks for task declarations
(:mod:`robot_rl.envs.task`): numpy ufuncs only, so they work on scalars and arrays, in numpy and in numba.
``tolerance`` follows ``dm_control.utils.rewards.tolerance`` (Tassa et al. 2018, DeepMind Control Suite) for the
``gaussian`` and ``quadratic`` sigmoids, so rewards match the suite's.
"""

from __future__ import annotations

import math

import numpy as np

from robot_rl.envs.task import helper

_GAUSS_SCALE_01 = math.sqrt(-2.0 * math.log(0.1))  # gaussian with value 0.1 at the margin


def tolerance(x, *, bounds=(0.0, 0.0), margin: float = 0.0, sigmoid: str = "gaussian",
              value_at_margin: float = 0.1):
    """1 inside ``bounds``, decaying outside with distance/margin via ``sigmoid`` (value ``value_at_margin`` at 1).

    Works on floats and numpy arrays. ``margin == 0`` gives an indicator of the bounds.
    """
    lo, hi = bounds
    x = np.asarray(x, dtype=np.float64)
    inside = (lo <= x) & (x <= hi)
    if margin == 0:
        out = inside.astype(np.float64)
    else:
        d = np.where(x < lo, lo - x, x - hi) / margin
        if sigmoid == "gaussian":
            scale = _GAUSS_SCALE_01 if value_at_margin == 0.1 else math.sqrt(-2.0 * math.log(value_at_margin))
            val = np.exp(-0.5 * (d * scale) ** 2)
        elif sigmoid == "quadratic":
            scale = math.sqrt(1.0 - value_at_margin)
            sd = d * scale
            val = np.where(np.abs(sd) < 1.0, 1.0 - sd * sd, 0.0)
        else:
            raise ValueError(f"unknown sigmoid {sigmoid!r}; use 'gaussian' or 'quadratic'")
        out = np.where(inside, 1.0, val)
    return float(out) if out.ndim == 0 else out


@helper
def gaussian(x, margin):
    """``tolerance(x, margin=margin)`` as a term building block: bounds 0, gaussian, 0.1 at the margin. Elementwise
    (scalars or arrays, numpy or numba).
    """
    d = x / margin * _GAUSS_SCALE_01
    return np.exp(-0.5 * d * d)


@helper
def quadratic(x, margin):
    """``tolerance(x, margin=margin, sigmoid='quadratic', value_at_margin=0)`` as a term building block:
    ``max(1 - (x / margin)^2, 0)``. Elementwise (scalars or arrays, numpy or numba).
    """
    d = x / margin
    return np.maximum(1.0 - d * d, 0.0)


@helper
def clip_unit(u):
    """``u`` clipped to [-1, 1] (a normalized action as MuJoCo clamps its ctrl); NaN gives -1 (``fmin`` / ``fmax``
    ignore NaN). Elementwise (scalars or arrays, numpy or numba).
    """
    return np.fmin(1.0, np.fmax(-1.0, u))


@helper
def wrapped_angle(angle):
    """``angle`` [rad] wrapped to [-pi, pi]. Elementwise (scalars or arrays, numpy or numba)."""
    return np.arctan2(np.sin(angle), np.cos(angle))


def elementwise(fn, *columns: list) -> list:
    """``[fn(*args) for args in zip(*columns)]`` for lists of Python floats; an argument outside ``fn``'s domain
    (``math`` functions raise on a diverged, infinite state) gives NaN for that element instead of raising.

    The batched vector env builds observations this way (cos / sin of joint angles): the very function the single
    env calls, so the result is bit-identical (numpy's SIMD kernels may differ from the C library in the last bit).
    """
    try:
        return list(map(fn, *columns))
    except (ValueError, OverflowError):
        return [_safe(fn, *args) for args in zip(*columns)]


def _safe(fn, *args: float) -> float:
    try:
        return fn(*args)
    except (ValueError, OverflowError):
        return math.nan
