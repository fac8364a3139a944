"""Connecting to Ray: a private loopback-only local cluster, or an existing cluster by address.

``init_ray`` turns off usage statistics (``RAY_USAGE_STATS_ENABLED=0``) and the dashboard, and binds a private local
cluster to 127.0.0.1, so nothing listens on or connects to a non-loopback address. ``ray`` is imported here lazily.
"""

from __future__ import annotations

import os


def _quiet_env() -> None:
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"


def _loopback_only() -> None:
    """Make Ray resolve this node's IP to 127.0.0.1 (before ``ray.init``; its processes inherit the environment).

    ``ray.init(_node_ip_address="127.0.0.1")`` alone is not enough: Ray replaces a loopback address with the
    host's routable IP (``services.resolve_ip_for_localhost``) and its gRPC servers then listen on every interface.
    With cluster mode off (the setting Ray uses on macOS / Windows) the node IP *is* 127.0.0.1 and every Ray server
    (GCS, raylet, object manager, workers) binds to loopback only. Checked with ``ss -ltn`` (docs/scale.md).
    """
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    import sys

    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None:
        constants.ENABLE_RAY_CLUSTER = False


def import_ray():
    """``import ray`` with a clear error when the optional extra is not installed."""
    _quiet_env()
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("rollout.backend: ray / robot-rl sweep --backend ray need the optional extra: "
                          "pip install -r requirements-scale.txt (or robot_rl[scale])") from exc
    return ray


def init_ray(address: str | None = None, num_cpus: int | None = None, *, log_to_driver: bool = False) -> bool:
    """Start (``address`` None) or join (``host:port`` / ``auto``) a Ray cluster unless one is already connected.

    Returns True when this call connected (the caller then owns ``ray.shutdown()``), False when Ray was already
    initialized in this process.
    """
    import sys

    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        return False
    if address is None:
        _loopback_only()
    ray = import_ray()
    if address is None:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1",
                 log_to_driver=log_to_driver, configure_logging=False)
    else:
        ray.init(address=address, log_to_driver=log_to_driver, configure_logging=False)
    return True


def shutdown_ray() -> None:
    """``ray.shutdown()`` if Ray is imported and initialized."""
    import sys

    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
