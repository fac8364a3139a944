"""Automatic domain-randomization curriculum (ADR-style, OpenAI et al. 2019 "Solving Rubik's Cube").

One scalar ``scale`` in [0, 1] multiplies every randomization range (see ``robot_rl.envs.randomization``). When the
performance metric (e.g. mean evaluation return or success rate) reaches ``threshold``, the ranges widen by
``step``; if ``shrink_below`` is set and the metric falls below it, they narrow by ``step``. ``apply`` pushes the
current scale into an env or a vector env.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class AutoCurriculum:
    """Widen randomization when the policy is good enough.

    Args:
        threshold: metric value at or above which the ranges widen.
        step: change of ``scale`` per update.
        scale: current factor in [0, 1] (start value).
        shrink_below: optional metric value below which the ranges narrow again.

    """

    threshold: float
    step: float = 0.1
    scale: float = 0.0
    shrink_below: float | None = None

    def __post_init__(self):
        if not 0.0 < self.step <= 1.0:
            raise ValueError(f"step must be in (0, 1], got {self.step}")
        if not 0.0 <= self.scale <= 1.0:
            raise ValueError(f"scale must be in [0, 1], got {self.scale}")
        if self.shrink_below is not None and self.shrink_below >= self.threshold:
            raise ValueError(f"shrink_below {self.shrink_below} must be < threshold {self.threshold}")

    def update(self, metric: float) -> float:
        """Move ``scale`` according to ``metric``; returns the new scale."""
        if metric >= self.threshold:
            self.scale = min(1.0, self.scale + self.step)
        elif self.shrink_below is not None and metric < self.shrink_below:
            self.scale = max(0.0, self.scale - self.step)
        return self.scale

    def apply(self, env) -> None:
        """Set the scale on a single env (``env.unwrapped.randomization_scale``) or a vector env (``set_attr``)."""
        if hasattr(env, "set_attr") and hasattr(env, "num_envs"):
            env.set_attr("randomization_scale", self.scale)
        else:
            env.unwrapped.randomization_scale = self.scale
