"""Packaging: colcon build (ament_python) and a pip install both install the assets, and find_asset finds them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from robot_rl.core.assets import ASSET_DIRS, AssetNotFoundError, find_asset, share_roots

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def repo_assets() -> list[str]:
    out = []
    for top in ASSET_DIRS:
        for p in sorted((REPO / top).rglob("*")):
            if p.is_file() and "__pycache__" not in p.parts:
                out.append(str(p.relative_to(REPO)))
    return out


def _probe(pythonpath: Path, rel: str, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("ROBOT_RL_SHARE", "PYTHONPATH")}
    env["PYTHONPATH"] = str(pythonpath)
    code = (
        "import robot_rl, sys; from robot_rl.core.assets import find_asset; "
        f"print(robot_rl.__file__); print(find_asset({rel!r}))"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_source_checkout_lookup():
    assert REPO in share_roots()
    assert find_asset("package.xml") == REPO / "package.xml"
    with pytest.raises(AssetNotFoundError, match="searched"):
        find_asset("hardware/no_such_robot.yaml")


def test_colcon_build_installs_package_assets_and_executables(tmp_path):
    env = dict(os.environ, PATH=f"{VENV_BIN}:{os.environ.get('PATH', '')}")
    res = subprocess.run(
        [str(VENV_BIN / "colcon"), "--log-base", str(tmp_path / "log"), "build", "--base-paths", str(REPO),
         "--packages-select", "robot_rl", "--build-base", str(tmp_path / "build"),
         "--install-base", str(tmp_path / "install")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    prefix = tmp_path / "install" / "robot_rl"
    share = prefix / "share" / "robot_rl"
    assert (share / "package.xml").is_file()
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / "robot_rl").is_file()
    for rel in repo_assets():
        assert (share / rel).is_file(), f"colcon install lacks {rel}"
    assert (prefix / "lib" / "robot_rl" / "robot-rl").is_file()
    import setup_nodes_probe  # noqa: F401  (see conftest: lists NODES from setup.py)

    for exe in setup_nodes_probe.NODES:
        assert (prefix / "lib" / "robot_rl" / exe).is_file(), f"executable {exe} not under lib/robot_rl"
    site = next((prefix / "lib").glob("python3*/site-packages"))
    assets = repo_assets()
    if assets:
        out = _probe(site, assets[0], tmp_path)
        assert str(site) in out.splitlines()[0]
        assert out.splitlines()[1] == str(share / assets[0])


def test_pip_install_places_assets_under_share(tmp_path):
    prefix = tmp_path / "prefix"
    res = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "-q", "--no-deps",
         "--no-build-isolation", "--ignore-installed", "--prefix", str(prefix), str(REPO)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    share = prefix / "share" / "robot_rl"
    for rel in repo_assets():
        assert (share / rel).is_file(), f"pip install lacks {rel}"
    assert (prefix / "bin" / "robot-rl").is_file()
    site = next((prefix / "lib").glob("python3*/site-packages"))
    assets = repo_assets()
    if assets:
        out = _probe(site, assets[0], tmp_path)
        assert out.splitlines()[1] == str(share / assets[0])
