"""Host scheduling jitter: how late does a process that does nothing but sleep wake up?

A cyclic-test in the spirit of rt-tests' ``cyclictest``, with no ROS, no DDS and no Python work between wake-ups:
one probe process per CPU, pinned to it, at SCHED_FIFO priority ``--priority`` (above the nodes' 50, so no process
of this machine can keep it off its CPU), sleeps to absolute deadlines every ``--period-ms`` and records how late
each wake-up was. A wake-up later than ``--stall-ms`` is a *stall*: for that long the CPU ran neither the probe nor
anything the probe could preempt, i.e. the hypervisor (or an interrupt / non-preemptible kernel section) held the
virtual CPU. Steal time from /proc/stat is reported beside it.

On a real-time robot computer (PREEMPT_RT, isolated cores) the worst wake-up is tens of microseconds; a stall of
several milliseconds here means no user-space program on this machine can promise zero 2 ms deadline misses.
``bench/bench_ros_latency.py`` runs the same probes alongside policy_node and reports which of its deadline misses
coincide with a host stall.

    .venv/bin/python bench/bench_host_jitter.py --duration 60 --out bench/results/host_jitter.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from _machine import machine_header

PROBE = textwrap.dedent("""
    import gc, json, os, sys, time
    cpu, duration, period_ns, priority, stall_ns = (int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]),
                                                    int(sys.argv[4]), int(sys.argv[5]))
    os.sched_setaffinity(0, {cpu})
    rt = 0
    if priority:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
            rt = priority
        except OSError:
            pass
    gc.disable()
    n = int(duration * 1e9 // period_ns)
    hist = [0] * 64          # lateness histogram, bins of 100 us (last bin: >= 6.3 ms)
    stalls = []              # (deadline CLOCK_REALTIME ns, lateness ns)
    mono, real = time.monotonic_ns, time.time_ns
    deadline = mono() + period_ns
    worst = 0
    for _ in range(n):
        rem = deadline - mono()
        if rem > 0:
            time.sleep(rem / 1e9)
        late = mono() - deadline
        hist[min(63, late // 100_000)] += 1
        if late > worst:
            worst = late
        if late > stall_ns:  # its start on CLOCK_REALTIME (the clock of the ROS header stamps), read now
            stalls.append((real() - late, late))
        deadline += period_ns
        if late > period_ns:  # skip the deadlines already missed: one stall is counted once
            deadline += (late // period_ns) * period_ns
    print(json.dumps({"cpu": cpu, "rt": rt, "wakeups": sum(hist), "hist": hist, "worst_ns": worst,
                      "stalls": stalls}))
""")


def steal_jiffies() -> int:
    """Total steal time of all CPUs from /proc/stat (jiffies; 0 where the kernel does not report it)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
        return int(fields[8]) if len(fields) > 8 else 0
    except OSError:
        return 0


def start_probes(duration: float, period_ms: float = 1.0, priority: int = 90, stall_ms: float = 1.0,
                 cpus: list[int] | None = None) -> list[subprocess.Popen]:
    """Start one probe process per CPU (all CPUs this process may run on); collect them with :func:`collect`."""
    cpus = sorted(os.sched_getaffinity(0)) if cpus is None else cpus
    return [subprocess.Popen([sys.executable, "-c", PROBE, str(c), str(duration), str(int(period_ms * 1e6)),
                              str(priority), str(int(stall_ms * 1e6))], stdout=subprocess.PIPE, text=True)
            for c in cpus]


def collect(procs: list[subprocess.Popen], timeout: float = 60.0) -> list[dict]:
    """Wait for the probes and return their results (one dict per CPU)."""
    out = []
    for p in procs:
        stdout, _ = p.communicate(timeout=timeout)
        if p.returncode != 0:
            raise RuntimeError(f"host jitter probe exited with {p.returncode}")
        out.append(json.loads(stdout))
    return out


def merge(intervals: np.ndarray) -> np.ndarray:
    """Union of ``[start, end]`` rows as sorted disjoint rows (a hypervisor pause seen by every CPU's probe once)."""
    out: list[list[float]] = []
    for a, b in sorted(map(tuple, np.asarray(intervals, dtype=np.float64).reshape(-1, 2))):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return np.asarray(out, dtype=np.float64).reshape(-1, 2)


def stall_intervals(results: list[dict]) -> np.ndarray:
    """The stalls of all CPUs merged into disjoint ``[start, end]`` rows, CLOCK_REALTIME seconds."""
    return merge(np.asarray([(t * 1e-9, (t + late) * 1e-9) for r in results for t, late in r["stalls"]]))


def chance_fraction(stalls: np.ndarray, lengths: np.ndarray, span: tuple[float, float]) -> float:
    """Expected share of windows that overlap a stall by chance: a window of length ``L`` starting at a uniformly
    random time in ``span`` overlaps a stall ``[s, e]`` iff it starts in ``[s - L, e]``; averaged over ``lengths``."""
    t0, t1 = span
    if t1 <= t0 or len(lengths) == 0 or stalls.size == 0:
        return 0.0
    fracs = []
    for length in lengths:
        cover = merge(np.column_stack([stalls[:, 0] - length, stalls[:, 1]]))
        cover = np.clip(cover, t0, t1)
        fracs.append(float(np.sum(cover[:, 1] - cover[:, 0])) / (t1 - t0))
    return float(np.mean(fracs))


def coinciding(windows: np.ndarray, stalls: np.ndarray, slack_s: float = 0.0) -> np.ndarray:
    """For each [start, end] window (CLOCK_REALTIME s), whether any stall overlaps it (widened by ``slack_s``)."""
    if windows.size == 0 or stalls.size == 0:
        return np.zeros(len(windows), dtype=bool)
    starts, ends = stalls[:, 0] - slack_s, stalls[:, 1] + slack_s
    return np.array([bool(np.any((starts <= b) & (ends >= a))) for a, b in windows])


def summarize(results: list[dict], period_ms: float) -> list[str]:
    """Markdown table rows, one per CPU: wake-ups, percentiles from the histogram, worst, stalls."""
    rows = []
    for r in results:
        hist = np.asarray(r["hist"])
        cdf = np.cumsum(hist) / max(1, hist.sum())
        pct = {q: 0.1 * (int(np.searchsorted(cdf, q)) + 1) for q in (0.5, 0.99, 0.999)}
        stalls = np.asarray([late for _, late in r["stalls"]], dtype=float) * 1e-6
        rows.append(f"| {r['cpu']} | {'FIFO ' + str(r['rt']) if r['rt'] else 'normal'} | {r['wakeups']} | "
                    f"< {pct[0.5]:.1f} | < {pct[0.99]:.1f} | < {pct[0.999]:.1f} | {r['worst_ns'] * 1e-6:.2f} | "
                    f"{stalls.size} | {int((stalls > 2 * period_ms).sum())} |")
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds to probe")
    ap.add_argument("--period-ms", type=float, default=1.0, help="wake-up period of each probe [ms]")
    ap.add_argument("--priority", type=int, default=90, help="SCHED_FIFO priority of the probes (0: normal)")
    ap.add_argument("--stall-ms", type=float, default=1.0, help="a wake-up later than this is a stall [ms]")
    ap.add_argument("--out", default=None, help="write a markdown report here")
    args = ap.parse_args(argv)
    if not 0 <= args.priority <= 98 or args.period_ms <= 0 or args.duration <= 0:
        raise SystemExit("--priority must be 0-98, --period-ms and --duration positive")
    steal0 = steal_jiffies()
    results = collect(start_probes(args.duration, args.period_ms, args.priority, args.stall_ms),
                      timeout=args.duration + 60)
    steal = (steal_jiffies() - steal0) / os.sysconf("SC_CLK_TCK")
    stalls = stall_intervals(results)
    gaps = np.diff(stalls[:, 0]) if len(stalls) > 1 else np.zeros(0)
    load = os.getloadavg()
    lines = [
        "# Host scheduling jitter (no ROS)", "",
        machine_header(), "",
        f"Command: `.venv/bin/python bench/bench_host_jitter.py --duration {args.duration:g} --period-ms "
        f"{args.period_ms:g} --priority {args.priority} --stall-ms {args.stall_ms:g}`", "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, kernel {platform.release()}, load average "
        f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} after the run. One probe process per CPU, pinned, sleeping "
        f"to absolute deadlines every {args.period_ms:g} ms; lateness = wake-up time minus deadline (percentiles "
        "from a 100 us histogram). A stall = a wake-up later than "
        f"{args.stall_ms:g} ms.", "",
        "| CPU | scheduling | wake-ups | p50 [ms] | p99 [ms] | p99.9 [ms] | worst [ms] | stalls | stalls > 2 periods |",
        "|---|---|---|---|---|---|---|---|---|",
        *summarize(results, args.period_ms), "",
        f"Steal time reported by the kernel during the run: {steal:.2f} s of {args.duration * len(results):g} CPU-s.",
        f"Time between stalls (any CPU, overlapping ones merged): median {np.median(gaps):.2f} s, "
        f"min {gaps.min():.3f} s." if gaps.size
        else "Fewer than two stalls: no spacing to report.", "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


@pytest.mark.bench
def test_host_jitter_short(tmp_path):
    """``make bench``: 2 s of probing gives one row per CPU with every wake-up accounted for."""
    out = tmp_path / "host_jitter.md"
    assert main(["--duration", "2", "--priority", "0", "--out", str(out)]) == 0
    text = out.read_text()
    for cpu in sorted(os.sched_getaffinity(0)):
        assert f"| {cpu} | normal |" in text
    windows = np.array([[0.0, 1.0], [5.0, 6.0]])
    assert coinciding(windows, np.array([[0.5, 0.6]])).tolist() == [True, False]
    assert coinciding(windows, np.array([[6.2, 6.3]]), slack_s=0.25).tolist() == [False, True]
    # one 3 ms pause seen by both CPUs is one stall; a 2 ms window hits it by chance in 5 ms of a 10 s span
    both = merge(np.array([[1.000, 1.003], [1.0005, 1.003]]))
    assert both.tolist() == [[1.0, 1.003]]
    assert abs(chance_fraction(both, np.array([0.002]), (0.0, 10.0)) - 0.0005) < 1e-12


if __name__ == "__main__":
    sys.exit(main())
