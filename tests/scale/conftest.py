"""Fixtures of the scale tests: one private Ray cluster on loopback for the session, always shut down."""

from __future__ import annotations

import os
import threading

import pytest

os.environ["RAY_USAGE_STATS_ENABLED"] = "0"

@pytest.fixture(scope="session")
def ray_cluster():
    """A 2-CPU Ray cluster bound to 127.0.0.1 (dashboard and usage stats off); shut down within 60 s at the end."""
    pytest.importorskip("ray", reason="robot_rl[scale] extra (requirements-scale.txt) not installed")
    from robot_rl.scale.cluster import init_ray, shutdown_ray

    started = init_ray(num_cpus=2)
    import ray

    yield ray
    if started:
        t = threading.Thread(target=shutdown_ray, daemon=True)
        t.start()
        t.join(timeout=60)
        assert not t.is_alive(), "ray.shutdown() did not finish within 60 s"
