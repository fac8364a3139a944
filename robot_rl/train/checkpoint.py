"""Complete, atomic checkpoints.

``save_atomic`` writes to a temp file in the destination directory, fsyncs it, ``os.replace``s it over the target and
fsyncs the directory: a crash (kill -9, power loss) at any point leaves either the previous complete checkpoint or
the new complete one, never a torn file. ``load_checkpoint`` only unpickles with ``weights_only=True`` (tensors and
plain Python types; no code execution from a checkpoint) and says which file failed and why.

RNG states (Python, NumPy legacy global, torch) are captured as tensors / plain types so they load weights-only.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint could not be written or read; the message names the file and the reason."""


def save_atomic(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` to ``path`` atomically (see module docstring). Raises ``CheckpointError`` on I/O errors."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        reason = exc.strerror or str(exc)
        raise CheckpointError(f"could not write checkpoint {path}: {reason} (errno {exc.errno}); "
                              f"the previous checkpoint at that path, if any, is unchanged") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by ``save_atomic`` (weights-only unpickling). ``CheckpointError`` says why not."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError, ... depending on the damage
        raise CheckpointError(f"cannot load checkpoint {path}: {type(exc).__name__}: {str(exc).splitlines()[0]} "
                              f"(file truncated, corrupt, or not a robot_rl checkpoint)") from None
    if not isinstance(payload, dict) or "format_version" not in payload:
        raise CheckpointError(f"cannot load checkpoint {path}: not a robot_rl checkpoint (no format_version)")
    if payload["format_version"] != FORMAT_VERSION:
        raise CheckpointError(f"cannot load checkpoint {path}: format version {payload['format_version']}, "
                              f"this code reads version {FORMAT_VERSION}")
    return payload


def capture_rng() -> dict[str, Any]:
    """Global RNG states (python ``random``, numpy legacy global, torch CPU) as weights-only-loadable data."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": random.getstate(), "torch": torch.get_rng_state(),
            "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "cached": float(cached)}}


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of ``capture_rng``."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
