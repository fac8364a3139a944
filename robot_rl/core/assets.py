"""One function to find the project's data files (sim/, hardware/, config/, launch/, models/).

Works from a source checkout, a pip install (data_files under ``<prefix>/share/robot_rl``) and a colcon install
(``install/robot_rl/share/robot_rl``). ``ROBOT_RL_SHARE`` overrides the search.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

ASSET_DIRS = ("sim", "hardware", "config", "launch", "models")
_PKG_DIR = Path(__file__).resolve().parent.parent


class AssetNotFoundError(FileNotFoundError):
    """Raised when a named asset is in none of the searched roots (the message lists them)."""


def _candidate_roots() -> list[Path]:
    roots: list[Path] = []
    env = os.environ.get("ROBOT_RL_SHARE")
    if env:
        roots.append(Path(env))
    # Source checkout: the package sits next to sim/ and hardware/.
    checkout = _PKG_DIR.parent
    if (checkout / "hardware").is_dir() and (checkout / "sim").is_dir():
        roots.append(checkout)
    # pip (site-packages/robot_rl -> <prefix>/share/robot_rl) and colcon (same shape under install/robot_rl).
    for parent in _PKG_DIR.parents:
        share = parent / "share" / "robot_rl"
        if share.is_dir():
            roots.append(share)
            break
    # ament index, when a ROS 2 install provides it.
    try:  # pragma: no cover - only on a full ROS 2 install
        from ament_index_python.packages import get_package_share_directory

        roots.append(Path(get_package_share_directory("robot_rl")))
    except Exception:  # noqa: BLE001 - any failure just means "not installed that way"
        pass
    seen, out = set(), []
    for r in roots:
        if r not in seen:
            seen.add(r)
            out.append(r)
    return out


@lru_cache(maxsize=1)
def share_roots() -> tuple[Path, ...]:
    """Roots searched for assets, most specific first."""
    return tuple(_candidate_roots())


def find_asset(relpath: str | os.PathLike) -> Path:
    """Return the absolute path of an asset such as ``"hardware/cartpole.yaml"``.

    An absolute path or a path relative to the current directory that exists is returned as is, so users can
    point at their own files. Raises ``AssetNotFoundError`` naming every root searched.
    """
    p = Path(relpath)
    if p.is_absolute() or p.exists():
        if p.exists():
            return p.resolve()
        raise AssetNotFoundError(f"asset {str(relpath)!r} does not exist")
    roots = share_roots()
    for root in roots:
        cand = root / p
        if cand.exists():
            return cand
    searched = ", ".join(str(r) for r in roots) or "(no share root found)"
    raise AssetNotFoundError(f"asset {str(relpath)!r} not found; searched: {searched}")
