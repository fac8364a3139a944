"""mpc_node on the simulated cart-pole over real DDS: replan rate, solve-time percentiles, deadline misses.

Each setup is ``config/mpc_cartpole.yaml`` with a few fields overridden (written to a temporary MPC config) and
runs ``launch/sim_mpc.launch.yaml config:=<it>`` through ``robot-rl launch`` (sim_robot with a held-out reality
sample + mpc_node, no recorder) for ``--duration`` seconds of wall time on loopback with its own ROS domain id, then
reads the numbers the nodes log at exit: mpc_node's planner statistics (replans, solve time p50/p99/max, deadline
misses, fallback actions) and sim_robot's return (the task reward, once per 0.02 s control step, summed over the
run; the swing-up env starts hanging).

    .venv/bin/python bench/bench_mpc_node.py --duration 30 --out bench/results/mpc_node.md
    .venv/bin/pytest -m bench bench/bench_mpc_node.py      # short run with sanity checks
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from _machine import machine_header

REPO = Path(__file__).resolve().parents[1]

BASE_CONFIG = REPO / "config" / "mpc_cartpole.yaml"
# (label, overrides of BASE_CONFIG: MpcConfig key paths, the same names as mpc_node's parameters)
SETUPS = {
    "ilqr-h25": ("iLQR, horizon 25 (0.5 s), 1 iteration per replan", ["mpc.horizon=25", "ilqr.max_iterations=1"]),
    "ilqr-h50": ("iLQR, horizon 50 (1.0 s), 1 iteration per replan", ["mpc.horizon=50", "ilqr.max_iterations=1"]),
    "ilqr-h100": ("iLQR, horizon 100 (2.0 s), 1 iteration per replan",
                  ["mpc.horizon=100", "ilqr.max_iterations=1"]),
    "ilqr-h100-coarse": ("iLQR, horizon 100, 1 iteration, coarse planning model (timestep = control period)",
                         ["mpc.horizon=100", "ilqr.max_iterations=1", "coarse_model=true"]),
    "sampling-h25": ("CEM sampling, horizon 25, 64 samples", ["planner=cem", "mpc.horizon=25",
                                                               "sampling.num_samples=64"]),
}
STAT = re.compile(r"(\w+)=([^,\s]+)")


def run_setup(key: str, duration: float, env_id: str, seed: int, env: dict) -> dict:
    """Run one setup; return the parsed statistics (and the log tail when something is missing)."""
    from robot_rl.control.factory import MpcConfig
    from robot_rl.core.config import dump_yaml, load_config

    _label, overrides = SETUPS[key]
    state = tempfile.mkdtemp(prefix="bench_mpc_state_")
    config = Path(state) / f"mpc_{key}.yaml"
    config.write_text(dump_yaml(load_config(MpcConfig, BASE_CONFIG, overrides=overrides)))
    cmd = [sys.executable, "-m", "robot_rl.cli", "launch", str(REPO / "launch" / "sim_mpc.launch.yaml"),
           f"config:={config}", f"env_id:={env_id}", f"seed:={seed}", "record:=false", f"state_dir:={state}",
           "--duration", str(duration)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration + 120, cwd=REPO)
    out = proc.stdout + proc.stderr
    planner = [ln for ln in out.splitlines() if "planner: replans=" in ln]
    sim = [ln for ln in out.splitlines() if "physics steps, return" in ln]
    r = {"key": key, "exit": proc.returncode, "tail": "\n".join(out.splitlines()[-15:])}
    if planner:
        stats = dict(STAT.findall(planner[-1].split("planner: ", 1)[1]))
        r.update({k: stats.get(k) for k in ("replans", "deadline_misses", "fallback_actions", "plan_actions",
                                            "solve_ms_p50", "solve_ms_p99", "solve_ms_max")})
    if sim:
        m = re.search(r"sim time ([\d.]+) s, (\d+) physics steps, return ([-\d.]+)", sim[-1])
        if m:
            r.update(sim_time_s=float(m.group(1)), sim_return=float(m.group(3)))
    return r


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=30.0, help="wall seconds per setup")
    ap.add_argument("--setups", default=",".join(SETUPS), help=f"comma-separated, from {list(SETUPS)}")
    ap.add_argument("--env-id", default="robot_rl/CartpoleSwingup-v0",
                    help="sim_robot task (reward, initial state): swing-up starts hanging")
    ap.add_argument("--seed", type=int, default=7, help="seed of sim_robot's reality sample")
    ap.add_argument("--out", default=None, help="write a markdown report here")
    args = ap.parse_args(argv)
    keys = [k.strip() for k in args.setups.split(",")]
    unknown = [k for k in keys if k not in SETUPS]
    if unknown:
        ap.error(f"--setups: unknown {unknown}; choose from {list(SETUPS)}")
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", PYTHONUNBUFFERED="1")
    env.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid() + 1).randint(150, 199)))
    results = []
    for key in keys:
        r = run_setup(key, args.duration, args.env_id, args.seed, env)
        results.append(r)
        print(f"{key}: " + ", ".join(f"{k}={v}" for k, v in r.items() if k != "tail"), flush=True)
    load = os.getloadavg()
    lines = [
        "# mpc_node replanning on the simulated cart-pole (ROS 2, loopback)", "",
        machine_header(), "",
        f"Command: `.venv/bin/python bench/bench_mpc_node.py --duration {args.duration:g} --setups {args.setups} "
        f"--env-id {args.env_id} --seed {args.seed}" + (f" --out {args.out}`" if args.out else "`"), "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, load average "
        f"after the run {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1/5/15 min). Control period 0.02 s (50 Hz); "
        "the planner thread replans once per control period from the newest state with a budget of one period "
        "(at most 50 replans / s); a deadline miss is a replan over budget, and after 3 consecutive misses the "
        "node sends fallback actions. sim_robot runs the MJCF with the held-out `reality` randomization "
        f"sample (seed {args.seed}, including its extra actuation latency), starting hanging; return = task reward "
        "summed over the run (max 1 per 0.02 s step; the mean per step is in parentheses).", "",
        "| setup | wall s | replans | replans / s | solve p50 [ms] | solve p99 [ms] | solve max [ms] | deadline misses "
        "| fallback actions | sim s | return (mean per step) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        label = SETUPS[r["key"]][0]
        if r.get("replans") is None:
            lines.append(f"| {label} | {args.duration:g} | (no statistics: exit {r['exit']}) |||||||||")
            continue
        sim_s, ret = r.get("sim_time_s"), r.get("sim_return")
        per_s = f"{ret:.1f} ({ret / (sim_s / 0.02):.2f})" if sim_s else "n/a"
        lines.append(f"| {label} | {args.duration:g} | {r['replans']} | {int(r['replans']) / args.duration:.1f} | "
                     f"{r['solve_ms_p50']} | {r['solve_ms_p99']} | {r['solve_ms_max']} | {r['deadline_misses']} | "
                     f"{r['fallback_actions']} | {sim_s if sim_s is not None else 'n/a'} | {per_s} |")
    lines += ["", "replans / s counts over the whole wall time, including node start-up (a few seconds), so it is a "
              "lower bound of the steady replan rate."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0 if all(r["exit"] == 0 and r.get("replans") is not None for r in results) else 1


@pytest.mark.bench
@pytest.mark.ros
def test_mpc_node_short(tmp_path):
    """``make bench``: 12 s of iLQR MPC; the planner replans, reports percentiles and the node exits cleanly."""
    out = tmp_path / "mpc_node.md"
    assert main(["--duration", "12", "--setups", "ilqr-h25", "--out", str(out)]) == 0
    row = [ln for ln in out.read_text().splitlines() if ln.startswith("| iLQR, horizon 25")][0]
    replans = int(row.split("|")[3])
    assert replans > 100, row


if __name__ == "__main__":
    sys.exit(main())
