"""Pieces of a run directory every training loop writes: ``run.json`` (atomically) and the code version."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path


def code_version() -> str:
    """``<package version>+g<git short hash>`` (the hash when the code runs from a git checkout)."""
    import robot_rl

    version = getattr(robot_rl, "__version__", "unknown")
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        rev = ""
    return f"{version}+g{rev}" if rev else version


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` as JSON through a temporary file and ``replace`` (readers never see a partial file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=float) + "\n")
    tmp.replace(path)
