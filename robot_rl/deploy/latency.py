"""Latency and deadline statistics for control loops (pure Python + numpy, no ROS).

``LatencyStats`` keeps every sample (a 60 s run at 500 Hz is 30k floats) so percentiles are exact, not binned.
"""

from __future__ import annotations

import numpy as np


class LatencyStats:
    """Samples of one latency [s]; ``deadline_s`` counts samples above it as deadline misses."""

    def __init__(self, name: str, deadline_s: float | None = None):
        self.name = name
        self.deadline_s = deadline_s
        self._samples: list[float] = []

    def add(self, seconds: float) -> None:
        self._samples.append(float(seconds))

    def __len__(self) -> int:
        return len(self._samples)

    def summary(self) -> dict[str, float]:
        """``{"n", "p50_ms", "p99_ms", "max_ms", "mean_ms", "misses"}`` (zeros when empty)."""
        if not self._samples:
            return {"n": 0, "p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0, "mean_ms": 0.0, "misses": 0}
        a = np.asarray(self._samples) * 1e3
        misses = int((a > self.deadline_s * 1e3).sum()) if self.deadline_s is not None else 0
        return {"n": int(a.size), "p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
                "max_ms": float(a.max()), "mean_ms": float(a.mean()), "misses": misses}

    def format(self) -> str:
        s = self.summary()
        text = (f"{self.name}: n={s['n']} p50={s['p50_ms']:.3f} ms p99={s['p99_ms']:.3f} ms "
                f"max={s['max_ms']:.3f} ms")
        if self.deadline_s is not None:
            text += f" misses(>{self.deadline_s * 1e3:.3g} ms)={s['misses']}"
        return text
