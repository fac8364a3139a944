"""The dynamics monitor's hand-over to mpc_node, through ROS: what the robot does after the alarm, e-stop vs fallback.

The shipped swing-up policy (models/cartpole_swingup_sac, rail variant) with its shipped monitor runs through
``launch/sim_policy.launch.yaml`` (sim_robot with a sample far outside the training ranges, policy_node, recorder;
loopback, its own ROS domain id) under each action on the monitor's alarm:

- ``estop``: the e-stop latches, the safe command (zero force) goes out;
- ``fallback``: ``monitor_action:=fallback fallback:=true``, mpc_node with config/mpc_cartpole.yaml (the nominal
  model) plans on the live state from the start and policy_node sends its commands after the alarm;
- ``fallback-delay5``: the same with ``mpc.delay_steps=5`` (the planner predicts 5 periods of actuation latency, as
  a latency identified from the robot's logs would set it).

From the bag: the alarm time, the fraction of the last 5 s with the pole up (cos > 0.9), whether it is held at the
end (cos > 0.95 over the last 2 s), the farthest cart position after the alarm and the rail-limit hits
(|x| > 1.8 m, the profile's limit).

    .venv/bin/python bench/bench_fallback.py --seeds 0 1 2 3 4 --out bench/results/fallback.md
"""

from __future__ import annotations

import argparse
import io
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _machine import machine_header

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "cartpole_swingup_sac"
ENV_ID = "robot_rl/CartpoleSwingupRail-v0"
CONDITIONS = {"latency 5-6 periods": "bench/randomization/ood_latency_5.yaml",
              "joint damping +0.1-0.2": "bench/randomization/ood_joint_damping.yaml"}
VARIANTS = {"estop": None, "fallback": [], "fallback-delay5": ["mpc.delay_steps=5"]}
RAIL_M = 1.8


def run_one(condition: str, seed: int, variant: str, duration: float, work: Path) -> dict:
    """One launch; the metrics from its bag."""
    from robot_rl.control.factory import MpcConfig
    from robot_rl.core.config import dump_yaml, load_config
    from robot_rl.data.bags import TYPESTORE, read_bag
    from robot_rl.deploy.launch_file import load_launch
    from robot_rl.deploy.launch_runner import run_launch

    run = work / f"{variant}_{seed}_{abs(hash(condition)) % 10_000}"
    run.mkdir(parents=True)
    args = {"model": str(MODEL), "monitor": str(MODEL / "monitor"), "env_id": ENV_ID,
            "randomization": str(REPO / CONDITIONS[condition]), "seed": str(seed), "bag": str(run / "bag"),
            "state_dir": str(run / "state"), "monitor_action": "estop"}
    overrides = VARIANTS[variant]
    if overrides is not None:
        config = run / "fallback_mpc.yaml"
        config.write_text(dump_yaml(load_config(MpcConfig, REPO / "config" / "mpc_cartpole.yaml",
                                                overrides=overrides)))
        args.update(monitor_action="fallback", fallback="true", fallback_config=str(config),
                    fallback_state_dir=str(run / "mpc_state"))
    env = {**os.environ, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
           "ROS_DOMAIN_ID": str(random.Random(f"{os.getpid()}{run}").randint(120, 200))}
    out = io.StringIO()
    rc = run_launch(load_launch(REPO / "launch" / "sim_policy.launch.yaml", args), duration_s=duration,
                    env=env, out=out)
    raw = read_bag(run / "bag")
    msgtype, items = raw.topics["/joint_states"]
    js = [(t, TYPESTORE.deserialize_cdr(p, msgtype)) for t, p in items]
    t = np.array([(ts - js[0][0]) * 1e-9 for ts, _ in js])
    q = np.array([m.position for _, m in js])
    dtype, diag = raw.topics.get("/diagnostics", (None, []))
    alarm_s = np.nan
    for ts, payload in diag:
        for st in TYPESTORE.deserialize_cdr(payload, dtype).status:
            if st.name.endswith("dynamics monitor") and "does not behave" in st.message and np.isnan(alarm_s):
                alarm_s = (ts - js[0][0]) * 1e-9
    up = np.cos(q[:, 1])
    after = t >= (alarm_s if np.isfinite(alarm_s) else t[-1])
    return {"rc": rc, "alarm_s": alarm_s, "up_last5": float(np.mean(up[t >= t[-1] - 5.0] > 0.9)),
            "held_end": bool(np.all(up[t >= t[-1] - 2.0] > 0.95)),
            "max_x_after": float(np.abs(q[after, 0]).max()) if after.any() else np.nan,
            "rail_hits_after": int(np.sum(np.abs(q[after, 0]) > RAIL_M)),
            "estop": (run / "state").exists() and any((run / "state").iterdir()), "seconds": float(t[-1])}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="reality-sample seeds")
    ap.add_argument("--duration", type=float, default=22.0, help="launch wall time per run [s] (~4 s start-up)")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "fallback.md")
    a = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_fallback_") as tmp:
        for condition in CONDITIONS:
            for variant in a.variants:
                for seed in a.seeds:
                    t0 = time.monotonic()
                    r = run_one(condition, seed, variant, a.duration, Path(tmp))
                    rows.append((condition, variant, seed, r))
                    print(f"{condition} | {variant} | seed {seed}: {r} ({time.monotonic() - t0:.0f} s)", flush=True)
    lines = ["# The monitor's hand-over to mpc_node (cart-pole swing-up, through ROS)", "", machine_header(), "",
             f"Generated by `python bench/bench_fallback.py --seeds {' '.join(map(str, a.seeds))}` "
             f"({a.duration:g} s launches, ~{a.duration - 4:g} s of data each); see its docstring for the setup.", "",
             "| condition | on the alarm | runs | alarms | alarm at [s] (median) | pole up, last 5 s (mean) | "
             "held at the end | farthest cart after the alarm [m] | rail hits after the alarm | e-stop latched |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for condition in CONDITIONS:
        for variant in a.variants:
            rs = [r for c, v, _s, r in rows if c == condition and v == variant]
            alarms = [r["alarm_s"] for r in rs if np.isfinite(r["alarm_s"])]
            lines.append(f"| {condition} | {variant} | {len(rs)} | {len(alarms)} | "
                         f"{np.median(alarms) if alarms else float('nan'):.1f} | "
                         f"{np.mean([r['up_last5'] for r in rs]):.2f} | "
                         f"{sum(r['held_end'] for r in rs)} of {len(rs)} | "
                         f"{np.nanmax([r['max_x_after'] for r in rs]):.2f} | {sum(r['rail_hits_after'] for r in rs)} | "
                         f"{sum(r['estop'] for r in rs)} of {len(rs)} |")
    lines += ["", "Per run (condition, action, seed: alarm s, pole-up fraction of the last 5 s, held at the end, "
              "farthest cart after the alarm, launch exit code):", ""]
    lines += [f"- {c}, {v}, seed {s}: alarm {r['alarm_s']:.2f} s, up {r['up_last5']:.2f}, held {r['held_end']}, "
              f"|x| {r['max_x_after']:.2f} m, rc {r['rc']}" for c, v, s, r in rows]
    a.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
