"""Shared fixtures. ROS tests get a private ROS_DOMAIN_ID and localhost-only discovery."""

from __future__ import annotations

import os
import random

import pytest

os.environ.setdefault("MUJOCO_GL", "osmesa")
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"


@pytest.fixture
def ros_env(monkeypatch):
    """Environment for a ROS test: loopback-only discovery and a domain id no parallel run shares."""
    domain = str(random.Random(os.getpid() ^ id(monkeypatch)).randint(1, 101))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.setenv("ROS_DOMAIN_ID", domain)
    env = dict(os.environ)
    return env
