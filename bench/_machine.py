"""The facts about a benchmark run that a reader needs to compare it with another: CPU, cores, load, code.

Every results file in bench/results/ starts with ``machine_header()``, so its numbers say where they came from
(CPU model and core count: absolute rates differ several-fold between machines; load: other jobs on shared cores;
commit: which code was timed, with ``+dirty`` when the working tree had uncommitted changes).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The first ``model name`` in /proc/cpuinfo (Linux), else ``"unknown"``."""
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return "unknown"


def git_commit(repo: Path = REPO) -> str:
    """``git rev-parse --short HEAD`` of ``repo``, with ``+dirty`` for uncommitted changes to tracked files."""
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True, timeout=10).stdout.strip()
        status = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return head + ("+dirty" if status else "")


def machine_header() -> str:
    """Two paragraphs for the top of a results file: ``CPU: ...`` (model, logical cores, 1-min load average) and
    ``Commit: ...``. Call it when the run ends, so the load covers the measurement."""
    load = f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "unknown"
    return (f"CPU: {cpu_model()}, {os.cpu_count()} logical cores, 1-min load average {load} at the end of the run\n\n"
            f"Commit: {git_commit()}")


def cache_run(res: dict, cache: Path | None, name: str) -> dict:
    """Stamp a finished run (1-min load, finish time, commit) and, unless ``cache`` is None, write it as
    ``cache/name.json``, so runs of several invocations (one process per core) meet in one report."""
    import json
    import time

    res.update(load=os.getloadavg()[0], finished=time.strftime("%Y-%m-%d %H:%M:%S"), commit=git_commit())
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        (cache / f"{name}.json").write_text(json.dumps(res, indent=1))
    return res


def load_runs(cache: Path) -> list[dict]:
    """Every run cached by ``cache_run`` in ``cache``, in file-name order."""
    import json

    return [json.loads(p.read_text()) for p in sorted(cache.glob("*.json"))]
