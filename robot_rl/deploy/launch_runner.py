"""Run a parsed launch file: one process per node, logs prefixed with ``[name]``, orderly shutdown.

No rclpy here: the runner only starts processes. A node stops the whole launch when it exits (its non-zero exit code
becomes the launch's); Ctrl-C, SIGTERM or the end of ``duration_s`` send SIGINT to every node, then SIGTERM after
``grace_s``, then SIGKILL. DDS stays on this machine unless the caller's environment says otherwise
(``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` and a ``ROS_DOMAIN_ID`` are filled in when unset).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from robot_rl.deploy.launch_file import LaunchDescription, LaunchError, NodeAction

CLEAN_STOP_CODES = (0, -signal.SIGINT, -signal.SIGTERM, 128 + signal.SIGINT, 128 + signal.SIGTERM)


def ros_env_defaults(env: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for node processes: loopback-only discovery and a domain id unless the caller chose them.

    The default domain id (100-199, from the runner's pid) keeps parallel launches on one machine apart; a real
    robot deployment sets ``ROS_DOMAIN_ID`` (and ``ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET``) itself.
    """
    out = dict(os.environ if env is None else env)
    out.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    out.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
    out.setdefault("PYTHONUNBUFFERED", "1")
    return out


def resolve_executable(exe: str) -> list[str]:
    """Command prefix for a node executable.

    ``robot_rl.nodes.<exec>`` run with this interpreter (``python -m``) when that module exists, so a source checkout
    and an install behave the same; otherwise the installed console script (``lib/robot_rl/<exec>`` as colcon
    installs it, or on PATH).
    """
    if exe.isidentifier() and importlib.util.find_spec(f"robot_rl.nodes.{exe}") is not None:
        return [sys.executable, "-m", f"robot_rl.nodes.{exe}"]
    prefix = Path(sys.prefix)
    for cand in (prefix / "lib" / "robot_rl" / exe, prefix / "bin" / exe):
        if cand.is_file() and os.access(cand, os.X_OK):
            return [str(cand)]
    found = shutil.which(exe)
    if found:
        return [found]
    raise LaunchError(f"executable {exe!r}: no module robot_rl.nodes.{exe} and no console script of that name")


def node_command(node: NodeAction) -> list[str]:
    """Full command line of a node: executable then ``--ros-args`` (name, namespace, params, remaps)."""
    return resolve_executable(node.exec) + node.ros_args()


@dataclass
class _Running:
    node: NodeAction
    proc: subprocess.Popen
    pump: threading.Thread


def _pump(name: str, stream, out, lock: threading.Lock) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", errors="replace").rstrip("\n")
        with lock:
            out.write(f"[{name}] {line}\n")
            out.flush()
    stream.close()


class LaunchRunner:
    """Start the nodes of a ``LaunchDescription`` and supervise them until one exits, a signal, or the duration."""

    def __init__(self, desc: LaunchDescription, *, env: dict[str, str] | None = None, out=None,
                 grace_s: float = 5.0):
        self.desc = desc
        self.env = ros_env_defaults(env)
        self.out = out if out is not None else sys.stdout
        self.grace_s = grace_s
        self._lock = threading.Lock()
        self._running: list[_Running] = []
        self._stop_reason: str | None = None

    def log(self, msg: str) -> None:
        with self._lock:
            self.out.write(f"[launch] {msg}\n")
            self.out.flush()

    def request_stop(self, reason: str) -> None:
        """Ask the supervision loop to stop every node (safe to call from a signal handler)."""
        if self._stop_reason is None:
            self._stop_reason = reason

    def start(self) -> None:
        cmds = [(n, node_command(n)) for n in self.desc.nodes]  # resolve everything before starting anything
        self.log(f"ROS_DOMAIN_ID={self.env['ROS_DOMAIN_ID']} "
                 f"ROS_AUTOMATIC_DISCOVERY_RANGE={self.env['ROS_AUTOMATIC_DISCOVERY_RANGE']}")
        for node, cmd in cmds:
            proc = subprocess.Popen(cmd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
            pump = threading.Thread(target=_pump, args=(node.name, proc.stdout, self.out, self._lock), daemon=True)
            pump.start()
            self._running.append(_Running(node, proc, pump))
            self.log(f"started {node.name} (pid {proc.pid}): {' '.join(cmd)}")

    def supervise(self, duration_s: float | None = None, poll_s: float = 0.05) -> int:
        """Wait until a node exits, a stop is requested, or ``duration_s`` passes; stop all; return the exit code."""
        deadline = None if duration_s is None else time.monotonic() + duration_s
        first_exit: tuple[str, int] | None = None
        while self._stop_reason is None:
            for r in self._running:
                code = r.proc.poll()
                if code is not None:
                    first_exit = (r.node.name, code)
                    self.request_stop(f"node {r.node.name} exited with code {code}")
                    break
            if deadline is not None and time.monotonic() >= deadline:
                self.request_stop(f"duration {duration_s:g} s reached")
            time.sleep(poll_s)
        self.log(f"stopping: {self._stop_reason}")
        codes = self.stop_all()
        for r in self._running:
            r.pump.join(timeout=2.0)
        if first_exit is not None and first_exit[1] != 0:
            self.log(f"exit code {first_exit[1]} from {first_exit[0]}")
            return first_exit[1] if first_exit[1] > 0 else 128 - first_exit[1]
        bad = {name: c for name, c in codes.items() if c not in CLEAN_STOP_CODES}
        if bad:
            self.log(f"nodes did not stop cleanly: {bad}")
            return 1
        return 0

    def stop_all(self) -> dict[str, int]:
        """SIGINT every live node, SIGTERM after ``grace_s``, SIGKILL after another ``grace_s``; exit codes."""
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            live = [r for r in self._running if r.proc.poll() is None]
            if not live:
                break
            if sig != signal.SIGINT:
                self.log(f"sending {sig.name} to {[r.node.name for r in live]}")
            for r in live:
                try:
                    r.proc.send_signal(sig)
                except ProcessLookupError:
                    pass
            end = time.monotonic() + self.grace_s
            while time.monotonic() < end and any(r.proc.poll() is None for r in live):
                time.sleep(0.02)
        return {r.node.name: r.proc.wait() for r in self._running}


def run_launch(desc: LaunchDescription, *, duration_s: float | None = None, env: dict[str, str] | None = None,
               out=None, grace_s: float = 5.0) -> int:
    """Run a launch description in the foreground; SIGINT / SIGTERM stop it. Returns the exit code."""
    runner = LaunchRunner(desc, env=env, out=out, grace_s=grace_s)
    handlers = {}
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        for sig in (signal.SIGINT, signal.SIGTERM):
            handlers[sig] = signal.signal(sig, lambda s, _f: runner.request_stop(f"{signal.Signals(s).name}"))
    try:
        runner.start()
        return runner.supervise(duration_s)
    except BaseException:
        runner.request_stop("launch runner error")
        runner.stop_all()
        raise
    finally:
        for sig, h in handlers.items():
            signal.signal(sig, h)
