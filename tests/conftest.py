"""Shared fixtures. ROS tests get a private ROS_DOMAIN_ID and localhost-only discovery."""

from __future__ import annotations

import os
import random

import pytest

import robot_rl  # noqa: F401 - picks MuJoCo's headless GL backend before any test module imports mujoco

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"


@pytest.fixture
def ros_env(monkeypatch):
    """Environment for a ROS test: loopback-only discovery and a domain id no parallel run shares."""
    domain = str(random.Random(os.getpid() ^ id(monkeypatch)).randint(1, 101))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.setenv("ROS_DOMAIN_ID", domain)
    env = dict(os.environ)
    return env


def _load_setup_nodes():
    """Expose setup.py's NODES dict as module ``setup_nodes_probe`` without running setup()."""
    import ast
    import sys
    import types
    from pathlib import Path

    tree = ast.parse((Path(__file__).resolve().parents[1] / "setup.py").read_text())
    nodes = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "NODES" for t in node.targets):
            nodes = ast.literal_eval(node.value)
    mod = types.ModuleType("setup_nodes_probe")
    mod.NODES = nodes
    sys.modules["setup_nodes_probe"] = mod


_load_setup_nodes()
