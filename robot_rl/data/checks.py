"""Semantic checks and damage reports for episode datasets and bags.

Every loader in ``robot_rl.data`` runs ``check_episode`` on every episode it returns; there is no switch to turn it
off (docs/reliability.md, scenario 16). Damage found while reading (truncated file, checksum mismatch, undecodable
record) goes into a ``LoadReport`` that names the file, the damaged byte range, the affected time range and what was
lost (scenario 15); loaders never raise on damage inside a file, they skip what is damaged and keep every intact
episode (bags: every intact part of one).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np

SPACE_TOLERANCE = 1e-5
"""Values may exceed a Box bound by this much (float32 rounding of scaled actions) before a check fails."""


@dataclass
class Damage:
    """One damaged region of a file.

    Attributes:
        byte_range: ``(start, end)`` byte offsets [B] of the damaged region in the file (end exclusive).
        time_range_s: ``(t_first, t_last)`` [s] of the data affected (None when unknown).
        what: what was wrong (checksum mismatch, truncated record, ...).
        lost: what could not be recovered (episodes, messages per topic, ...).

    """

    byte_range: tuple[int, int]
    time_range_s: tuple[float, float] | None
    what: str
    lost: str
    file: str = ""
    """The damaged file (a bag directory may hold several)."""
    lost_messages: dict[str, int] = field(default_factory=dict)
    """Messages lost per topic, where the file says how many (an MCAP chunk's message index); empty = unknown."""
    time_range_ns: tuple[int, int] | None = None
    """``time_range_s`` as exact integer log times [ns] (bag readers set it; episode splitting compares with it)."""

    def describe(self) -> str:
        t = "time unknown"
        if self.time_range_s is not None:
            t = f"t=[{self.time_range_s[0]:.6f}, {self.time_range_s[1]:.6f}] s"
        where = f"{self.file} " if self.file else ""
        return f"{where}bytes [{self.byte_range[0]}, {self.byte_range[1]}), {t}: {self.what}; lost: {self.lost}"


@dataclass
class EpisodeReport:
    """Outcome of loading one episode: kept (``ok``) or dropped with the reasons; a kept episode with issues was
    truncated (the issues say where and by what).
    """

    name: str
    steps: int
    ok: bool
    issues: list[str] = field(default_factory=list)
    time_range_s: tuple[float, float] | None = None
    byte_range: tuple[int, int] | None = None

    def describe(self) -> str:
        status = ("ok" if not self.issues else "ok, TRUNCATED") if self.ok else "DROPPED"
        where = ""
        if self.time_range_s is not None:
            where += f" t=[{self.time_range_s[0]:.6f}, {self.time_range_s[1]:.6f}] s"
        if self.byte_range is not None:
            where += f" bytes [{self.byte_range[0]}, {self.byte_range[1]})"
        text = f"{self.name}: {status}, {self.steps} steps{where}"
        if self.issues:
            text += "; " + "; ".join(self.issues)
        return text


@dataclass
class LoadReport:
    """Everything a loader found about one file (dataset or bag)."""

    source: str
    episodes: list[EpisodeReport] = field(default_factory=list)
    damage: list[Damage] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.damage and all(e.ok for e in self.episodes)

    @property
    def n_kept(self) -> int:
        return sum(e.ok for e in self.episodes)

    @property
    def n_dropped(self) -> int:
        return sum(not e.ok for e in self.episodes)

    def describe(self) -> str:
        """Human-readable multi-line report (what ``robot-rl`` prints)."""
        head = f"{self.source}: {self.n_kept} episodes loaded, {self.n_dropped} dropped"
        if self.damage:
            head += f", {len(self.damage)} damaged region(s)"
        lines = [head]
        lines += [f"  damaged: {d.describe()}" for d in self.damage]
        lines += [f"  note: {n}" for n in self.notes]
        lines += [f"  {e.describe()}" for e in self.episodes if not e.ok or e.issues]  # dropped or truncated
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _finite_issue(name: str, value: np.ndarray) -> str | None:
    arr = np.asarray(value)
    if not np.issubdtype(arr.dtype, np.floating):
        return None
    bad = ~np.isfinite(arr)
    if bad.any():
        rows = np.nonzero(bad.reshape(len(arr), -1).any(axis=1))[0] if arr.ndim else np.array([0])
        return f"{name}: {int(bad.sum())} non-finite value(s), first at step {int(rows[0])}"
    return None


def _box_issue(name: str, value: np.ndarray, space: gym.spaces.Box) -> str | None:
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape[1:] != space.shape:
        return f"{name}: shape {arr.shape[1:]} per step, space expects {space.shape}"
    lo = np.broadcast_to(np.asarray(space.low, dtype=np.float64), space.shape)
    hi = np.broadcast_to(np.asarray(space.high, dtype=np.float64), space.shape)
    with np.errstate(invalid="ignore"):
        bad = (arr < lo - SPACE_TOLERANCE) | (arr > hi + SPACE_TOLERANCE)
    if bad.any():
        step, *idx = np.argwhere(bad)[0]
        return (f"{name}: {int(bad.sum())} value(s) outside the space, first at step {int(step)} index {tuple(idx)} "
                f"value {arr[(step, *idx)]:.6g} not in [{lo[tuple(idx)]:.6g}, {hi[tuple(idx)]:.6g}]")
    return None


def check_values(name: str, value, space: gym.Space, length: int) -> list[str]:
    """Length, finiteness and space membership of one per-step field (a Box array or a dict of them)."""
    issues: list[str] = []
    if isinstance(space, gym.spaces.Dict):
        if not isinstance(value, dict):
            return [f"{name}: expected a dict of arrays for a Dict space, got {type(value).__name__}"]
        missing = sorted(set(space.spaces) - set(value))
        if missing:
            issues.append(f"{name}: missing keys {missing}")
        for key, sub in space.spaces.items():
            if key in value:
                issues += check_values(f"{name}/{key}", value[key], sub, length)
        return issues
    arr = np.asarray(value)
    if len(arr) != length:
        return [f"{name}: {len(arr)} entries, expected {length}"]
    issue = _finite_issue(name, arr)
    if issue:
        issues.append(issue)
    if isinstance(space, gym.spaces.Box):
        issue = _box_issue(name, arr, space)
        if issue:
            issues.append(issue)
    elif isinstance(space, gym.spaces.Discrete):
        if np.any((arr < space.start) | (arr >= space.start + space.n)):
            issues.append(f"{name}: values outside Discrete({space.n}, start={space.start})")
    return issues


def check_episode(episode, observation_space: gym.Space, action_space: gym.Space) -> list[str]:
    """All semantic checks of one ``robot_rl.data.dataset.Episode``; returns the problems found (empty = ok).

    Checks: per-step arrays have ``T`` entries and observations / timestamps / infos ``T + 1``; no NaN or Inf in
    observations, actions, rewards, timestamps; observations and actions inside their spaces; timestamps strictly
    increasing; termination / truncation flags only on the last step.
    """
    issues: list[str] = []
    n = len(episode.actions)
    if n == 0:
        return ["episode has no steps"]
    issues += check_values("observations", episode.observations, observation_space, n + 1)
    issues += check_values("actions", episode.actions, action_space, n)
    for key in ("rewards", "terminations", "truncations"):
        arr = np.asarray(getattr(episode, key))
        if arr.shape != (n,):
            issues.append(f"{key}: shape {arr.shape}, expected ({n},)")
    issue = _finite_issue("rewards", np.asarray(episode.rewards))
    if issue:
        issues.append(issue)
    t = np.asarray(episode.time_s, dtype=np.float64)
    if t.shape != (n + 1,):
        issues.append(f"time_s: shape {t.shape}, expected ({n + 1},)")
    else:
        issue = _finite_issue("time_s", t)
        if issue:
            issues.append(issue)
        else:
            dt = np.diff(t)
            if np.any(dt <= 0):
                k = int(np.argmax(dt <= 0))
                issues.append(f"time_s not strictly increasing at step {k}: {t[k]:.9f} s -> {t[k + 1]:.9f} s")
    for key, arr in (episode.infos or {}).items():
        if len(np.asarray(arr)) != n + 1:
            issues.append(f"infos/{key}: {len(np.asarray(arr))} entries, expected {n + 1}")
    ends = np.asarray(episode.terminations, dtype=bool) | np.asarray(episode.truncations, dtype=bool)
    if ends.shape == (n,) and ends[:-1].any():
        issues.append(f"termination/truncation flag before the last step (step {int(np.argmax(ends[:-1]))})")
    return issues
