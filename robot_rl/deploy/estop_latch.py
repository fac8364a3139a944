"""A latched e-stop that survives a process restart: a file in a state directory (no ROS).

``trip(reason)`` writes ``<state_dir>/estop`` (temp file, fsync, ``os.replace``: never half-written); only
``clear()`` removes it. A policy node checks ``tripped()`` at start and latches its safety filter, so killing and
restarting the policy does not clear an e-stop (docs/reliability.md, scenario 9).
"""

from __future__ import annotations

import os
from pathlib import Path


class EstopLatch:
    """File-backed e-stop latch in ``state_dir`` (created if missing)."""

    FILE = "estop"

    def __init__(self, state_dir: str | os.PathLike):
        self.dir = Path(state_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / self.FILE

    def tripped(self) -> str | None:
        """The latched reason, or None when not tripped. An unreadable latch file counts as tripped."""
        if not self.path.exists():
            return None
        try:
            return self.path.read_text(encoding="utf-8").strip() or "e-stop latched (no reason recorded)"
        except (OSError, UnicodeDecodeError) as exc:
            return f"e-stop latch file {self.path} unreadable ({exc}): treated as latched"

    def trip(self, reason: str) -> None:
        tmp = self.path.with_name(self.FILE + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(reason + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        _fsync_dir(self.dir)

    def clear(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            return
        _fsync_dir(self.dir)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
