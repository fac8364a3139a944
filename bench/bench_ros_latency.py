"""Cross-process sensor -> command latency of policy_node over real DDS (loopback).

Three processes: a sensor publisher (``/joint_states`` at ``--sensor-rate`` Hz, default ``--rate``, from a
steady-clock loop, header stamp = CLOCK_REALTIME at publish), ``policy_node`` (LQR linear policy exported to ONNX,
run by ``OnnxPolicy`` through the safety filter, cart-pole profile re-timed to ``--rate`` Hz control and the sensor
rate), and this process, which receives the commands and the
node's ``~/timing`` messages. Latency of a command = its arrival time here (CLOCK_REALTIME) minus the header stamp
of the joint-state message it was computed from (the timing message names it; both are published in the same order,
so the k-th command pairs with the k-th timing message). A deadline miss is a latency above one period. Both
``trigger`` modes are measured: ``timer`` (acts every period on the latest sample: up to one period of waiting is
part of the latency) and ``sensor``, the node's default (acts in the joint-state callback of the first message of
each control period).

    .venv/bin/python bench/bench_ros_latency.py --duration 60 --out bench/results/ros_latency.md      # 500 Hz
    .venv/bin/python bench/bench_ros_latency.py --rate 50 --sensor-rate 100 --setups events:0   # the defaults, 50 Hz
    .venv/bin/pytest -m bench bench/bench_ros_latency.py     # short run (5 s per mode) with sanity checks
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_host_jitter  # noqa: E402
from _machine import machine_header  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

PUBLISHER = textwrap.dedent("""
    import math, os, sys, time, rclpy
    from sensor_msgs.msg import JointState
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    rate, duration, priority = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
    if priority:  # the sensor driver of a real-time robot runs at real-time priority too
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
        except OSError as exc:
            print(f"realtime priority refused: {exc}", flush=True)
    rclpy.init()
    node = rclpy.create_node("bench_sensor")
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    pub = node.create_publisher(JointState, "/joint_states", qos)
    msg = JointState(name=["slider", "hinge"])
    import gc
    gc.collect()
    gc.freeze()  # like the nodes: the collector no longer scans the start-up objects while publishing
    period, t0 = 1.0 / rate, time.monotonic()
    k, end = 0, t0 + duration
    while time.monotonic() < end:
        phase = k * period
        msg.position = [0.1 * math.sin(phase), 0.05 * math.sin(3.0 * phase)]
        msg.velocity = [0.1 * math.cos(phase), 0.15 * math.cos(3.0 * phase)]
        ns = time.time_ns()
        msg.header.stamp.sec, msg.header.stamp.nanosec = ns // 1_000_000_000, ns % 1_000_000_000
        pub.publish(msg)
        k += 1
        delay = t0 + k * period - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    print(f"published {k} joint states in {time.monotonic() - t0:.2f} s", flush=True)
""")


def write_profile(path: Path, period_s: float, sensor_period_s: float | None = None) -> Path:
    """The cart-pole profile re-timed: control period ``period_s``, sensor period ``sensor_period_s`` (default
    ``period_s``), sensor timeout 5 control periods."""
    text = (REPO / "hardware" / "cartpole.yaml").read_text()
    text = text.replace("control_period_s: 0.02", f"control_period_s: {period_s}")
    text = text.replace("sensor_period_s: 0.01", f"sensor_period_s: {sensor_period_s or period_s}")
    text = text.replace("sensor_timeout_s: 0.06", f"sensor_timeout_s: {5 * period_s}")
    text = text.replace("mjcf: sim/cartpole/cartpole.xml", f"mjcf: {REPO / 'sim/cartpole/cartpole.xml'}")
    path.write_text(text)
    return path


def measure(trigger: str, duration: float, rate: float, model_dir: Path, profile_path: Path, env: dict,
            executor_kind: str = "events", priority: int = 0, warmup: float = 0.5, host_probe: bool = True,
            sensor_rate: float | None = None) -> dict:
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from std_msgs.msg import Float64MultiArray

    from robot_rl.nodes._common import make_executor, set_realtime_priority

    period = 1.0 / rate
    node_log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)  # noqa: SIM115
    state_dir = tempfile.mkdtemp()
    node = subprocess.Popen(
        [sys.executable, "-m", "robot_rl.nodes.policy_node", "--ros-args", "-p", f"robot:={profile_path}",
         "-p", f"model:={model_dir}", "-p", f"control_period_s:={period}", "-p", f"trigger:={trigger}",
         "-p", f"state_dir:={state_dir}", "-p", f"executor:={executor_kind}", "-p", f"realtime_priority:={priority}"],
        env=env, stdout=node_log, stderr=subprocess.STDOUT)
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=int(env["ROS_DOMAIN_ID"]))
    probe = rclpy.create_node("bench_probe", context=ctx)
    arrivals, timings, values = [], [], []
    qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
    probe.create_subscription(Float64MultiArray, "/forward_effort_controller/commands",
                              lambda m: (arrivals.append(time.time_ns()), values.extend(m.data)), qos)
    probe.create_subscription(Float64MultiArray, "/policy_node/timing", lambda m: timings.append(tuple(m.data)), qos)
    executor = make_executor(executor_kind, context=ctx)
    executor.add_node(probe)
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.01)

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    if priority:  # the measuring process too (its DDS threads and the spinner): its receive time is the measurement
        set_realtime_priority(priority)
    time.sleep(3.0)  # node start-up and discovery
    # The measuring process keeps every sample in growing lists: no cyclic GC passes over them while measuring
    # (a full collection here would delay the receive time, i.e. the measurement, by milliseconds).
    gc.collect()
    gc.disable()
    # Host stall detectors (bench_host_jitter.py): one sleeping SCHED_FIFO-90 process per CPU, for the whole traffic.
    probes = bench_host_jitter.start_probes(duration + 1.0) if host_probe else []
    pub = subprocess.run([sys.executable, "-c", PUBLISHER, str(sensor_rate or rate), str(duration), str(priority)],
                         env=env,
                         capture_output=True, text=True, timeout=duration + 60)
    time.sleep(0.5)
    gc.enable()
    host = bench_host_jitter.collect(probes) if probes else []
    node.send_signal(2)
    node.wait(timeout=20)
    stop.set()
    spinner.join()
    executor.shutdown()
    probe.destroy_node()
    ctx.try_shutdown()
    node_log.seek(0)
    log = node_log.read()
    n = min(len(arrivals), len(timings))
    lat, warm_lat, safe_after_sample, first, t_first, miss_windows = [], [], 0, None, None, []
    for k in range(n):
        seq, stamp_s, age_s, _compute, safe = timings[k][:5]
        if np.isfinite(age_s):  # the first command after a newly accepted sample
            t_first = stamp_s if t_first is None else t_first
            if stamp_s - t_first < warmup:  # first traffic: discovery, first allocations, page faults
                warm_lat.append(arrivals[k] * 1e-9 - stamp_s)
                continue
            lat.append(arrivals[k] * 1e-9 - stamp_s)
            if lat[-1] > period:
                miss_windows.append((stamp_s, arrivals[k] * 1e-9))
            safe_after_sample += int(safe)
            first = k if first is None else first
    arr = np.asarray(arrivals[first or 0:n], dtype=np.float64) * 1e-9  # from the first sample on
    gaps = np.diff(arr) if arr.size > 1 else np.zeros(0)
    lat_ms = np.asarray(lat) * 1e3
    stalls = bench_host_jitter.stall_intervals(host)
    # A miss "coincides" with a host stall when a stall overlaps its [publish, arrival] window. Chance level: the
    # expected share of windows of the misses' lengths, placed at random in the analysed span, that overlap one.
    windows = np.asarray(miss_windows).reshape(-1, 2)
    hits = int(bench_host_jitter.coinciding(windows, stalls).sum())
    span = (t_first + warmup, float(arrivals[n - 1]) * 1e-9) if t_first is not None and n else (0.0, 0.0)
    covered = bench_host_jitter.chance_fraction(stalls, windows[:, 1] - windows[:, 0], span)
    internal = [ln.split("]: ", 1)[1] for ln in log.splitlines() if "sensor receive -> command publish" in ln]
    return {
        "trigger": trigger, "published": pub.stdout.strip(), "commands": int(arr.size), "timings": len(timings),
        "safe": safe_after_sample, "nonfinite": int((~np.isfinite(np.asarray(values, dtype=float))).sum()),
        "samples": int(lat_ms.size), "p50": float(np.percentile(lat_ms, 50)), "p99": float(np.percentile(lat_ms, 99)),
        "max": float(lat_ms.max()), "misses": int((lat_ms > period * 1e3).sum()),
        "gap_p99": float(np.percentile(gaps, 99) * 1e3) if gaps.size else float("nan"),
        "late_ticks": int((gaps > 1.5 * period).sum()), "internal": internal[0] if internal else "(not logged)",
        "exit": node.returncode, "log_tail": "\n".join(log.splitlines()[-5:]), "lat_ms": lat_ms,
        "warmup_samples": len(warm_lat), "warmup_misses": int((np.asarray(warm_lat) > period).sum()),
        "executor": executor_kind, "priority": priority, "host_probe": bool(probes), "host_stalls": len(stalls),
        "host_rt": min((r["rt"] for r in host), default=0),
        "host_worst_ms": max((r["worst_ns"] for r in host), default=0) * 1e-6, "miss_on_stall": hits,
        "stall_cover": covered,
    }


def parse_setups(text: str) -> list[tuple[str, int]]:
    """``"events:50,single:0"`` -> [("events", 50), ("single", 0)] (executor : SCHED_FIFO priority)."""
    out = []
    for item in text.split(","):
        kind, _, prio = item.strip().partition(":")
        if kind not in ("events", "single") or not prio.isdigit() or int(prio) > 98:
            raise SystemExit(f"--setups: expected executor:priority with executor events|single and priority 0-98, "
                             f"got {item!r}")
        out.append((kind, int(prio)))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of sensor traffic per trigger mode")
    ap.add_argument("--rate", type=float, default=500.0, help="control rate [Hz]")
    ap.add_argument("--sensor-rate", type=float, default=None,
                    help="joint-state rate [Hz] (default: --rate; the cart-pole profile's is 2x its control rate)")
    ap.add_argument("--triggers", default="sensor,timer", help="comma-separated trigger modes to measure")
    ap.add_argument("--setups", default="events:50,events:0,single:0",
                    help="comma-separated executor:priority pairs: the rclpy executor of policy_node and of the "
                         "measuring process (events|single), and the SCHED_FIFO priority of the sensor publisher, "
                         "policy_node and the measuring process (0: normal scheduling; >0 needs root or an rtprio "
                         "limit, else the node warns and runs unprioritized)")
    ap.add_argument("--warmup", type=float, default=0.5,
                    help="seconds of first traffic left out of the statistics (counted separately)")
    ap.add_argument("--no-host-probe", dest="host_probe", action="store_false",
                    help="do not run the host stall probes (bench_host_jitter.py) alongside the traffic")
    ap.add_argument("--out", default=None, help="write a markdown report here")
    args = ap.parse_args(argv)
    setups = parse_setups(args.setups)
    sensor_rate = args.sensor_rate or args.rate
    load_before = os.getloadavg()
    from robot_rl.core.profile import load_profile
    from robot_rl.export.lqr import write_lqr_artifact

    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", PYTHONUNBUFFERED="1")
    env.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(150, 199)))
    os.environ.update(ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    work = Path(tempfile.mkdtemp(prefix="bench_ros_latency_"))
    profile_path = write_profile(work / f"cartpole_{args.rate:g}hz.yaml", 1.0 / args.rate, 1.0 / sensor_rate)
    profile = load_profile(str(profile_path))
    model_dir = write_lqr_artifact(work / "lqr_policy", profile, "robot_rl/CartpoleBalance-v0")
    results = []
    for kind, prio in setups:
        for trigger in args.triggers.split(","):
            r = measure(trigger.strip(), args.duration, args.rate, model_dir, profile_path, env, kind, prio,
                        args.warmup, args.host_probe, sensor_rate)
            results.append(r)
            print(f"{kind}:{prio} {trigger}: " + ", ".join(f"{k}={v}" for k, v in r.items() if k != "lat_ms"),
                  flush=True)
    load = os.getloadavg()
    period_ms = 1e3 / args.rate
    lines = [
        f"# policy_node cross-process latency ({args.rate:g} Hz control, {sensor_rate:g} Hz joint states)", "",
        machine_header(), "",
        f"Command: `.venv/bin/python bench/bench_ros_latency.py --duration {args.duration:g} --rate {args.rate:g} "
        + (f"--sensor-rate {sensor_rate:g} " if sensor_rate != args.rate else "")
        + f"--setups {args.setups} --triggers {args.triggers}" + (f" --out {args.out}`" if args.out else "`"), "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Machine: "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, load average before "
        f"the run {load_before[0]:.2f} / {load_before[1]:.2f} / {load_before[2]:.2f}, after "
        f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1/5/15 min; other jobs share the machine). DDS: Fast DDS "
        "(rmw_fastrtps_cpp), loopback, reliable QoS.", "",
        "Policy: LQR gain as a linear ONNX layer (`robot_rl.deploy.lqr_policy`), run by `OnnxPolicy` inside "
        "policy_node through the safety filter. Latency = command arrival in the measuring process minus the "
        "header stamp (publish time) of the joint-state message the command was computed from; a miss is a "
        f"latency above one period ({period_ms:g} ms). Latency samples are the first command after each newly "
        f"accepted joint-state sample, after the first {args.warmup:g} s of traffic (discovery and first "
        "allocations; those samples and their misses are listed separately); `(safe)` counts samples that were the "
        "safe command (the filter's stale-sensor watchdog or timestamp checks fired: a starved process). "
        "`late ticks` = gaps between consecutive commands above 1.5 periods. `executor`: rclpy executor of "
        "policy_node and the measuring process; `prio`: SCHED_FIFO priority of all threads of the sensor "
        "publisher, policy_node and the measuring process (0: normal scheduling). The measuring process runs with "
        "its garbage collector paused while it records. `sensor` trigger (policy_node's default): the node acts in "
        "the joint-state callback of the first message at or after each control-period boundary; `timer`: every "
        "period on the latest sample, so up to one period of phase waiting is part of its "
        "latency by design. `host stalls`: wake-ups more than 1 ms late of the host probes of "
        "`bench/bench_host_jitter.py` (one sleeping SCHED_FIFO-90 process per CPU, no ROS, running during the "
        "traffic; stalls seen by both CPUs' probes at once count once): time when the virtual CPU ran nothing of "
        "this machine's user space. The probes wake 1000 times a second each, a few microseconds of CPU per wake-up "
        "(`--no-host-probe` leaves them out). `misses during a host stall`: deadline misses whose [publish, arrival] "
        "window overlaps such a stall; in parentheses the share expected by chance (windows of the same lengths "
        "placed at random in the analysed span).", "",
        "| executor | prio | trigger | commands | latency samples (safe) | p50 [ms] | p99 [ms] | max [ms] | misses "
        "| warm-up samples (misses) | command gap p99 [ms] | late ticks | host stalls (worst [ms]) "
        "| misses during a host stall (chance) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(f"| {r['executor']} | {r['priority']} | {r['trigger']} | {r['commands']} | {r['samples']} "
                     f"({r['safe']}) | {r['p50']:.3f} | {r['p99']:.3f} | {r['max']:.3f} | {r['misses']} "
                     f"({100 * r['misses'] / max(1, r['samples']):.2f} %) | {r['warmup_samples']} "
                     f"({r['warmup_misses']}) | {r['gap_p99']:.3f} | {r['late_ticks']} | "
                     + (f"{r['host_stalls']} ({r['host_worst_ms']:.1f}) | {r['miss_on_stall']} of {r['misses']} "
                        f"({100 * r['stall_cover']:.2f} %) |" if r["host_probe"] and r["host_rt"] else
                        "- | - (probes not run, or SCHED_FIFO refused: their stalls would include this machine's "
                        "own load) |"))
    lines += ["", "In-node measurement (sensor receive -> command publish, logged by policy_node at exit, whole run):",
              ""]
    lines += [f"- {r['executor']}:{r['priority']} {r['trigger']}: {r['internal']}" for r in results]
    lines += ["", "Non-finite values on the command topic: "
              + ", ".join(f"{r['executor']}:{r['priority']} {r['trigger']}: {r['nonfinite']}" for r in results)]
    lines += ["", "Sensor publisher: " + "; ".join(f"{r['executor']}:{r['priority']} {r['trigger']}: "
                                                   f"{r['published']}" for r in results), ""]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0 if all(r["exit"] == 0 for r in results) else 1


@pytest.mark.bench
@pytest.mark.ros
def test_ros_latency_short(tmp_path):
    """``make bench``: 5 s per trigger mode; commands flow, every value finite, the node exits cleanly."""
    out = tmp_path / "ros_latency.md"
    assert main(["--duration", "5", "--setups", "events:0,single:0", "--out", str(out)]) == 0
    text = out.read_text()
    for setup in ("| events | 0 |", "| single | 0 |"):
        assert f"{setup} timer |" in text and f"{setup} sensor |" in text
    assert "Non-finite values on the command topic: events:0 sensor: 0, events:0 timer: 0, single:0 sensor: 0, " \
        "single:0 timer: 0" in text


if __name__ == "__main__":
    sys.exit(main())
