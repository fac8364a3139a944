"""The dynamics monitor on the robot: does the robot still behave like the simulator the policy was trained in?

A probabilistic dynamics ensemble (``dynamics.onnx`` + ``dynamics.json``, trained on the policy's own closed loop
under its training randomization by ``robot-rl monitor``) predicts each control period's change of the measured joint
state from the previous state and the command sent. The score of a transition is the squared prediction error per
state dimension divided by the ensemble's predictive variance (the members' mean aleatoric variance plus their
disagreement: the spread of their means), reduced over dimensions by ``reduce`` (``max``: the most surprised
dimension, so a mismatch in one joint is not diluted by the others; ``mean``: the first monitors' statistic); its mean
over the last ``window`` transitions is compared with ``threshold``, calibrated on held-out in-distribution episodes
(``monitor.json``). In distribution the windowed score stays at a few units; unmodelled latency or dynamics push it up
before the policy fails (bench/results/monitor.md).

Torch-free, like the rest of the robot side: onnxruntime and numpy, one ensemble call per control period.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from robot_rl.export.runtime import ArtifactError, OnnxEnsemble, read_sidecar

MONITOR_FILE = "monitor.json"
MONITOR_FORMAT = "robot_rl.monitor/1"
REDUCTIONS = {"max": np.max, "mean": np.mean}
"""How a transition's per-dimension scores become one number (``monitor.json`` ``reduce``; absent = ``mean``, as
the monitors written before the key existed were calibrated)."""


def state_names(joint_names) -> list[str]:
    """The monitor's state layout for a robot: joint positions then velocities (``<joint>_vel``), profile order."""
    return [*joint_names, *(f"{j}_vel" for j in joint_names)]


class DynamicsMonitor:
    """Windowed one-step surprise of a dynamics ensemble on the live joint-state stream.

    ``update(q, qd, stamp_s, command)`` once per control period, with the measured joint state the command was
    computed from and the command sent; ``score`` (NaN until ``window`` transitions are in), ``alarm``.
    Transitions whose sensor stamps are not one control period apart (a dropped or repeated sample) are skipped.
    """

    def __init__(self, monitor_dir: str | Path, profile, *, threads: int = 1):
        monitor_dir = Path(monitor_dir)
        cfg = read_sidecar(monitor_dir / MONITOR_FILE, MONITOR_FORMAT)
        self.ensemble = OnnxEnsemble(monitor_dir, profile, threads=threads)
        expected = state_names(profile.joint_names)
        if list(self.ensemble.state_names) != expected or list(self.ensemble.output_names) != expected:
            raise ArtifactError(f"{monitor_dir}: the ensemble's state {list(self.ensemble.state_names)} is not the "
                                f"robot's joint state {expected}")
        if list(self.ensemble.action_names) != list(profile.command_joints):
            raise ArtifactError(f"{monitor_dir}: the ensemble's action {list(self.ensemble.action_names)} is not the "
                                f"robot's command joints {list(profile.command_joints)}")
        try:
            self.threshold = float(cfg["threshold"])
            self.window = int(cfg["window"])
            self.period_s = float(cfg["control_period_s"])
            self.angles = np.asarray(cfg["angle_indices"], dtype=np.intp)
            self.reduce = str(cfg.get("reduce", "mean"))
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"{monitor_dir / MONITOR_FILE}: lacks or mangles field {exc}") from None
        if self.reduce not in REDUCTIONS:
            raise ArtifactError(f"{monitor_dir / MONITOR_FILE}: reduce {self.reduce!r} is not one of "
                                f"{sorted(REDUCTIONS)}")
        self._reduce = REDUCTIONS[self.reduce]
        if not (self.threshold > 0 and self.window >= 1 and self.period_s > 0):
            raise ArtifactError(f"{monitor_dir / MONITOR_FILE}: threshold, window and control_period_s must be > 0")
        self.config = cfg
        n = len(expected)
        self._x = np.zeros((1, n))
        self._prev = np.zeros((1, n))
        self._prev_cmd = np.zeros((1, len(profile.command_joints)))
        self._prev_stamp: float | None = None
        self._ring = np.zeros(self.window)
        self._count = 0
        self._score = math.nan
        self.last = math.nan
        """The last transition's score."""
        self.peak = 0.0
        """The largest windowed score so far."""
        self.alarms = 0
        """Control periods with the windowed score above the threshold."""

    def reset(self) -> None:
        """Forget the history (after a reset of the robot or a gap in the stream)."""
        self._prev_stamp = None
        self._count = 0
        self._ring[:] = 0.0
        self._score = self.last = math.nan

    @property
    def score(self) -> float:
        """Mean score of the last ``window`` transitions (NaN until there are that many)."""
        return self._score

    @property
    def alarm(self) -> bool:
        return self._score > self.threshold  # False while NaN

    def transition_score(self, prev, command, x) -> float:
        """Score of one transition ``prev --command--> x`` (state vectors in ``state_names`` order)."""
        mean, logvar = self.ensemble(np.asarray(prev, dtype=np.float64).reshape(1, -1),
                                     np.asarray(command, dtype=np.float64).reshape(1, -1))
        mu = mean[:, 0].astype(np.float64)
        var = np.exp(logvar[:, 0].astype(np.float64)).mean(axis=0) + mu.var(axis=0)
        d = np.asarray(x, dtype=np.float64).reshape(-1) - np.asarray(prev, dtype=np.float64).reshape(-1)
        d[self.angles] = np.arctan2(np.sin(d[self.angles]), np.cos(d[self.angles]))
        return float(self._reduce((d - mu.mean(axis=0)) ** 2 / var))

    def update(self, q, qd, stamp_s: float, command) -> float:
        """One control period: score the transition from the previous period (if one period apart), remember this
        state and ``command``; returns the windowed score.
        """
        n = self._x.shape[1] // 2
        self._x[0, :n], self._x[0, n:] = q, qd
        if not np.isfinite(self._x).all() or not np.all(np.isfinite(command)):
            self.reset()
            return math.nan
        if self._prev_stamp is not None and 0.75 * self.period_s <= stamp_s - self._prev_stamp <= 1.25 * self.period_s:
            self.last = self.transition_score(self._prev, self._prev_cmd, self._x)
            self._ring[self._count % self.window] = self.last
            self._count += 1
            if self._count >= self.window:
                self._score = float(self._ring.mean())
                self.peak = max(self.peak, self._score)
                self.alarms += self._score > self.threshold
        self._prev[:] = self._x
        self._prev_cmd[0] = command
        self._prev_stamp = stamp_s
        return self.score
