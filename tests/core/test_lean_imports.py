"""Robot-side modules import without torch; only robot_rl.nodes imports rclpy (ARCHITECTURE.md boundaries)."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PKG = REPO / "robot_rl"

ROBOT_SIDE = ["robot_rl.safety", "robot_rl.export.runtime", "robot_rl.core", "robot_rl.deploy", "robot_rl.nodes",
              "robot_rl.control", "robot_rl.envs"]


def _modules(prefix: str) -> list[str]:
    rel = PKG.parent / prefix.replace(".", "/")
    if rel.with_suffix(".py").is_file():
        return [prefix]
    if not rel.is_dir():
        return []
    mods = [prefix]
    for info in pkgutil.walk_packages([str(rel)], prefix=prefix + "."):
        mods.append(info.name)
    return mods


def _import_report(modules: list[str]) -> dict:
    code = f"""
import importlib, json, sys
out = {{}}
for m in {modules!r}:
    before = set(sys.modules)
    importlib.import_module(m)
    new = set(sys.modules) - before
    out[m] = sorted(x for x in new if x.split('.')[0] in ('torch', 'rclpy'))
print(json.dumps(out))
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_robot_side_imports_no_torch():
    modules = [m for p in ROBOT_SIDE for m in _modules(p)]
    assert "robot_rl.core.config" in modules
    report = _import_report(modules)
    offenders = {m: [x for x in new if x.startswith("torch")] for m, new in report.items()}
    offenders = {m: v for m, v in offenders.items() if v}
    assert not offenders, f"robot-side modules import torch: {json.dumps(offenders)[:500]}"


def test_only_nodes_import_rclpy():
    modules = [m for m in _modules("robot_rl") if not m.startswith("robot_rl.nodes")]
    # Heavy training modules are imported too: they must not pull rclpy either.
    report = _import_report(modules)
    offenders = {m: v for m, v in report.items() if any(x.startswith("rclpy") for x in v)}
    assert not offenders, f"modules outside robot_rl.nodes import rclpy: {list(offenders)}"
