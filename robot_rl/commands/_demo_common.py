"""What both demos (``robot_rl.commands.demo``: cart-pole, ``robot_rl.commands._demo_legged``: Go2) share: stage
timing, the error type, keeping the previous output (metrics read back from the recorded bag:
:func:`robot_rl.data.run_metrics.bag_metrics`).
"""

from __future__ import annotations

import time
from pathlib import Path

from robot_rl.data.run_metrics import bag_metrics  # noqa: F401 - the demos' import


class DemoError(RuntimeError):
    """A stage failed; the message names the stage and where its logs are."""


def _stage(name: str, settings):
    """Context manager: print the stage banner, store its wall time in ``settings.stage_times_s[name]``."""
    class _Timer:
        def __enter__(self):
            print(f"\n=== {name} ===", flush=True)
            self.t0 = time.perf_counter()
            return self

        def __exit__(self, *exc):
            settings.stage_times_s[name] = time.perf_counter() - self.t0
            return False

    return _Timer()


def keep_previous(out_dir: Path) -> Path | None:
    """Move a non-empty ``out_dir`` to ``<out_dir>.previous`` (replacing an older one); returns where it went."""
    import shutil

    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        return None
    previous = out_dir.with_name(out_dir.name + ".previous")
    if previous.exists():
        shutil.rmtree(previous)
    out_dir.rename(previous)
    print(f"robot-rl demo: the previous output of {out_dir} moved to {previous}", flush=True)
    return previous
