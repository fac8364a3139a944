"""Reward shaping helpers (pure functions).

``tolerance`` follows ``dm_control.utils.rewards.tolerance`` (Tassa et al. 2018, DeepMind Control Suite) for the
``gaussian`` and ``quadratic`` sigmoids, so rewards match the suite's.
"""

from __future__ import annotations

import math

import numpy as np

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


def gaussian_tolerance(x: float, margin: float) -> float:
    """Scalar fast path of ``tolerance(x, margin=margin)`` (bounds 0, gaussian, 0.1 at margin)."""
    d = x / margin * _GAUSS_SCALE_01
    return math.exp(-0.5 * d * d)


def quadratic_tolerance(x: float, margin: float) -> float:
    """Scalar fast path of ``tolerance(x, margin=margin, sigmoid='quadratic', value_at_margin=0)``."""
    d = x / margin
    return 1.0 - d * d if abs(d) < 1.0 else 0.0


def elementwise(fn, *columns: list) -> list:
    """``[fn(*args) for args in zip(*columns)]`` for lists of Python floats; an argument outside ``fn``'s domain
    (``math`` functions raise on a diverged, infinite state) gives NaN for that element instead of raising.

    The batched vector env evaluates task rewards this way: the very function the single env calls, so the result
    is bit-identical (numpy's SIMD kernels for exp/cos/... may differ from the C library in the last bit).
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


def abs_wrapped_angle(angle: np.ndarray, threshold: float) -> np.ndarray:
    """``|atan2(sin a, cos a)|`` [rad] of the angles ``angle`` ``(N,)`` [rad] with numpy, except that the elements
    within 1e-9 rad of ``threshold`` are recomputed with ``math`` (as the scalar ``_evaluate`` does), so comparing
    the result with ``threshold`` (termination, success) gives exactly the scalar path's answer; the other elements
    may differ from ``math`` in the last bit (numpy's SIMD ``arctan2``). Call under ``np.errstate(invalid="ignore")``
    when ``angle`` may be non-finite.
    """
    w = np.abs(np.arctan2(np.sin(angle), np.cos(angle)))
    near = np.abs(w - threshold) < 1e-9
    if near.any():
        idx = np.flatnonzero(near)
        w[idx] = np.abs(elementwise(_atan2_sin_cos, angle[idx].tolist()))
    return w


def _atan2_sin_cos(a: float) -> float:
    return math.atan2(math.sin(a), math.cos(a))


def libm(fn, x: np.ndarray) -> np.ndarray:
    """``fn`` (a ``math`` function) applied elementwise to a float64 array, shape kept (see ``elementwise``)."""
    return np.array(elementwise(fn, x.ravel().tolist()), dtype=np.float64).reshape(x.shape)
