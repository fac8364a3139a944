"""Fixtures for ROS tests: node processes that are always killed, and an in-test rclpy probe node.

Every process gets the test's ``ros_env`` (loopback discovery, private ROS_DOMAIN_ID); the probe joins the same
domain through its own rclpy context, so tests never see each other's traffic.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest


class Procs:
    """Start node processes (``python -m robot_rl.nodes.<exec>``); logs go to files; teardown kills the rest."""

    def __init__(self, env: dict, log_dir: Path):
        self.env = env
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen] = {}

    def node(self, exe: str, name: str | None = None, params: dict | None = None, key: str | None = None
             ) -> subprocess.Popen:
        """Start node ``exe`` as ROS node ``name`` (default ``exe``); ``key`` names the process/log (default name)."""
        from robot_rl.deploy.launch_file import NodeAction

        name = name or exe
        action = NodeAction(pkg="robot_rl", exec=exe, name=name, params=tuple((params or {}).items()))
        cmd = [sys.executable, "-m", f"robot_rl.nodes.{exe}"] + action.ros_args()
        return self.start(key or name, cmd)

    def start(self, name: str, cmd: list[str]) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def wait_log(self, name: str, text: str, timeout: float) -> None:
        """Wait until ``text`` appears in the log of process ``name`` (e.g. a node's start-up line)."""
        end = time.monotonic() + timeout
        while text not in self.log(name):
            if time.monotonic() > end or self.procs[name].poll() is not None:
                raise AssertionError(f"{name}: {text!r} not logged within {timeout} s:\n{self.log(name)}")
            time.sleep(0.05)

    def stop(self, name: str, sig=signal.SIGINT, timeout: float = 10.0) -> int:
        proc = self.procs[name]
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(f"{name} did not stop within {timeout} s after {sig!r}:\n{self.log(name)}") from None

    def wait(self, name: str, timeout: float) -> int:
        try:
            return self.procs[name].wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{name} still running after {timeout} s:\n{self.log(name)}") from None

    def cleanup(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        end = time.monotonic() + 5.0
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class Probe:
    """An rclpy node in the test process, spinning in a thread: record topics, publish, call services."""

    def __init__(self, domain_id: int):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.rclpy = rclpy
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx, domain_id=domain_id)
        self.node = rclpy.create_node(f"probe_{os.getpid()}", context=self.ctx)
        self.executor = SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(self.node)
        self.lock = threading.Lock()
        self.records: dict[str, list[tuple[float, object]]] = {}
        self._stop = False
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        while not self._stop and self.ctx.ok():
            try:
                self.executor.spin_once(timeout_sec=0.02)
            except Exception:  # noqa: BLE001 - context shut down during teardown
                return

    def record(self, msg_type, topic: str) -> list[tuple[float, object]]:
        """Subscribe; received ``(time.monotonic(), msg)`` pairs accumulate in the returned list."""
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        out = self.records.setdefault(topic, [])

        def cb(msg):
            with self.lock:
                out.append((time.monotonic(), msg))

        self.node.create_subscription(msg_type, topic, cb, QoSProfile(depth=200,
                                                                      reliability=ReliabilityPolicy.RELIABLE))
        return out

    def publisher(self, msg_type, topic: str):
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        return self.node.create_publisher(msg_type, topic, QoSProfile(depth=10,
                                                                      reliability=ReliabilityPolicy.RELIABLE))

    def wait_for(self, predicate, timeout: float, what: str):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                value = predicate()
            if value:
                return value
            time.sleep(0.01)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")

    def call(self, srv_type, name: str, timeout: float = 5.0, request=None):
        """Call service ``name`` with ``request`` (default: an empty request) and return the response."""
        client = self.node.create_client(srv_type, name)
        if not client.wait_for_service(timeout_sec=timeout):
            raise AssertionError(f"service {name} not available within {timeout} s")
        future = client.call_async(srv_type.Request() if request is None else request)
        end = time.monotonic() + timeout
        while not future.done() and time.monotonic() < end:
            time.sleep(0.01)
        assert future.done(), f"service {name} did not answer within {timeout} s"
        return future.result()

    def close(self) -> None:
        self._stop = True
        self.thread.join(timeout=2.0)
        self.node.destroy_node()
        self.ctx.try_shutdown()


@pytest.fixture
def procs(ros_env, tmp_path):
    p = Procs(ros_env, tmp_path)
    yield p
    p.cleanup()


@pytest.fixture
def probe(ros_env):
    p = Probe(int(ros_env["ROS_DOMAIN_ID"]))
    yield p
    p.close()
