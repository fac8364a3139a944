"""Latency and deadline statistics for control loops (pure Python + numpy, no ROS).

``LatencyStats`` keeps the count, maximum, mean and deadline misses of every sample, and the samples themselves in a
preallocated ring buffer (default 131072: 4.4 min at 500 Hz, 1 MiB) for exact percentiles over the most recent ones.
Adding a sample allocates nothing, and memory stays bounded on a robot that runs for days. ``summary(recent=n)``
summarizes only the last ``n`` samples (what a 1 Hz diagnostics message needs, in microseconds instead of the
milliseconds that sorting the whole buffer would stall the control loop for).
"""

from __future__ import annotations

import numpy as np


class LatencyStats:
    """Samples of one latency [s]; ``deadline_s`` counts samples above it as deadline misses."""

    def __init__(self, name: str, deadline_s: float | None = None, capacity: int = 1 << 17):
        if capacity < 1:
            raise ValueError(f"LatencyStats {name!r}: capacity must be >= 1, got {capacity}")
        self.name = name
        self.deadline_s = deadline_s
        self._buf = np.empty(int(capacity), dtype=np.float64)
        self._n = 0  # samples ever added
        self._max = 0.0
        self._sum = 0.0
        self._misses = 0

    def add(self, seconds: float) -> None:
        seconds = float(seconds)
        self._buf[self._n % self._buf.size] = seconds
        self._n += 1
        self._sum += seconds
        if seconds > self._max:
            self._max = seconds
        if self.deadline_s is not None and seconds > self.deadline_s:
            self._misses += 1

    def __len__(self) -> int:
        return self._n

    def _recent(self, k: int) -> np.ndarray:
        """The last ``k`` samples (``k`` <= stored), in no particular order."""
        size = self._buf.size
        if self._n <= size:
            return self._buf[self._n - k:self._n]
        end = self._n % size
        return self._buf[end - k:end] if k <= end else np.concatenate([self._buf[size - (k - end):], self._buf[:end]])

    def summary(self, recent: int | None = None) -> dict[str, float]:
        """``{"n", "p50_ms", "p99_ms", "max_ms", "mean_ms", "misses"}`` (zeros when empty).

        Default: ``n``, ``max``, ``mean`` and ``misses`` over every sample, percentiles over the stored ones (all of
        them until the buffer wraps). ``recent``: everything over the last ``recent`` samples only.
        """
        if not self._n:
            return {"n": 0, "p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0, "mean_ms": 0.0, "misses": 0}
        stored = min(self._n, self._buf.size)
        if recent is None:
            a = self._recent(stored) * 1e3
            return {"n": self._n, "p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
                    "max_ms": self._max * 1e3, "mean_ms": self._sum / self._n * 1e3, "misses": self._misses}
        a = self._recent(max(1, min(int(recent), stored))) * 1e3
        misses = int((a > self.deadline_s * 1e3).sum()) if self.deadline_s is not None else 0
        return {"n": int(a.size), "p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
                "max_ms": float(a.max()), "mean_ms": float(a.mean()), "misses": misses}

    def format(self) -> str:
        s = self.summary()
        text = (f"{self.name}: n={s['n']} p50={s['p50_ms']:.3f} ms p99={s['p99_ms']:.3f} ms "
                f"max={s['max_ms']:.3f} ms")
        if self.deadline_s is not None:
            text += f" misses(>{self.deadline_s * 1e3:.3g} ms)={s['misses']}"
        if self._n > self._buf.size:
            text += f" (percentiles over the last {self._buf.size})"
        return text
