"""Does the dynamics monitor raise the alarm before the policy fails, without crying wolf in distribution?

The shipped cart-pole swing-up policy (models/cartpole_swingup_sac) and its monitor (``--monitor``, default the shipped
models/cartpole_swingup_sac/monitor, made by ``robot-rl monitor``) run passively (alarms are recorded, nothing is
switched) on sim_robot's plant (``robot_rl.train.monitor_fit.plant_episode``: sensor noise and bias, latency, the
sample's physics) for 10 s episodes under:

* the policy's training randomization (``wide_latency``, from policy.json; seeds 700000000.., never used for training
  or calibration): in distribution, every alarm is false;
* ``reality`` (the held-out profile, seeds 0..);
* far outside the training ranges (bench/randomization/): pole mass x2; actuation latency 3-4 and 5-6 periods
  (training: 0-2); pole mass x2 with latency 3-4; joint damping +0.1-0.2 (training: +0-0.01); motor force x0.5.

``--seed-offset N`` shifts every condition's seeds by N: fresh runs to check that a score or threshold chosen on the
default seeds holds on others.

Failure (cart-pole swing-up): the pole is not caught (upright, |angle| < 0.8 rad, for 1 s in a row) within 5 s, or
falls again after it was caught; the failure time is the 5 s mark or the fall. A failing run is detected when the
alarm comes before its failure time.

    .venv/bin/python bench/bench_monitor.py --episodes 20 --out bench/results/monitor.md
    .venv/bin/pytest -m bench bench/bench_monitor.py      # 3 episodes per condition
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from _machine import machine_header

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "cartpole_swingup_sac"
HERE = Path(__file__).resolve().parent
_SIDECAR = json.loads((MODEL / "policy.json").read_text())
ENV_ID = _SIDECAR["env_id"]
TRAINING_RZ = _SIDECAR["training"]["config"]["env"]["randomization"]
CONDITIONS = ((f"in distribution ({TRAINING_RZ})", TRAINING_RZ, 700_000_000),
              ("reality", "reality", 0),
              ("pole mass x2", str(HERE / "randomization" / "ood_pole_mass_x2.yaml"), 0),
              ("latency 3-4 periods", str(HERE / "randomization" / "ood_latency_3.yaml"), 0),
              ("latency 5-6 periods", str(HERE / "randomization" / "ood_latency_5.yaml"), 0),
              ("pole mass x2 + latency 3-4", str(HERE / "randomization" / "ood_mass_x2_latency_3.yaml"), 0),
              ("joint damping +0.1-0.2", str(HERE / "randomization" / "ood_joint_damping.yaml"), 0),
              ("motor force x0.5", str(HERE / "randomization" / "ood_motor_half.yaml"), 0))
UP_RAD, CAUGHT_S, DEADLINE_S = 0.8, 1.0, 5.0


def failure_step(hinge: np.ndarray, dt: float) -> int | None:
    """Control step of the failure (module docstring), None when the run did not fail."""
    up = np.abs(np.arctan2(np.sin(hinge), np.cos(hinge))) < UP_RAD
    k, deadline = round(CAUGHT_S / dt), round(DEADLINE_S / dt)
    run = np.convolve(up.astype(int), np.ones(k, dtype=int), "valid") == k
    caught = int(np.argmax(run)) if run.any() else None
    if caught is None or caught > deadline:
        return deadline
    down = ~up[caught:]
    return caught + int(np.argmax(down)) if down.any() else None


def run_condition(rz: str, seeds: list[int], monitor_dir: Path) -> list[dict]:
    from robot_rl.core.profile import load_profile
    from robot_rl.export.monitor import DynamicsMonitor
    from robot_rl.export.runtime import OnnxPolicy
    from robot_rl.train.monitor_fit import plant_episode

    profile = load_profile("cartpole")
    policy = OnnxPolicy.load(MODEL, profile)
    hinge = list(profile.joint_names).index("hinge")
    rows = []
    for seed in seeds:
        mon = DynamicsMonitor(monitor_dir, profile)
        ep = plant_episode(policy, ENV_ID, rz, seed, monitor=mon)
        rows.append({"seed": seed, "return": float(ep["reward"].sum()), "peak": mon.peak, "score": ep["score"],
                     "fail": failure_step(ep["q_true"][:, hinge], ep["dt"]), "dt": ep["dt"]})
    return with_alarms(rows, mon.threshold)


def with_alarms(rows: list[dict], threshold: float) -> list[dict]:
    """Rows with ``alarm``: the first control step whose windowed score is above ``threshold`` (None: never)."""
    out = []
    for r in rows:
        above = np.flatnonzero(r["score"] > threshold)
        out.append({**r, "alarm": int(above[0]) if above.size else None})
    return out


def summarize(rows: list[dict]) -> dict:
    failed = [r for r in rows if r["fail"] is not None]
    detected = [r for r in failed if r["alarm"] is not None and r["alarm"] < r["fail"]]
    ok = [r for r in rows if r["fail"] is None]
    lead = [(r["fail"] - r["alarm"]) * r["dt"] for r in detected]
    return {"runs": len(rows), "failed": len(failed), "alarms": sum(r["alarm"] is not None for r in rows),
            "detected": len(detected),
            "alarms_without_failure": sum(r["alarm"] is not None for r in ok), "ok": len(ok),
            "lead_s_median": float(np.median(lead)) if lead else float("nan"),
            "return_mean": float(np.mean([r["return"] for r in rows])),
            "peak_median": float(np.median([r["peak"] for r in rows])),
            "peak_max": float(np.max([r["peak"] for r in rows]))}


def table(results: dict[str, dict], threshold: float, statistic: str) -> list[str]:
    lines = [f"Threshold {threshold:.2f} (windowed score, statistic: {statistic}).", "",
             "| condition | runs | mean return | failed | alarm before failure | median lead [s] | alarms in runs "
             "that did not fail | peak score median / max |", "|---|---|---|---|---|---|---|---|"]
    for name, s in results.items():
        lines.append(f"| {name} | {s['runs']} | {s['return_mean']:.1f} | {s['failed']} | {s['detected']} of "
                     f"{s['failed']} | {s['lead_s_median']:.2f} | {s['alarms_without_failure']} of {s['ok']} | "
                     f"{s['peak_median']:.2f} / {s['peak_max']:.2f} |")
    return lines


def sweep(traces: dict[str, list[dict]], cal: dict) -> list[str]:
    """The same runs judged at other thresholds (margins over the calibration's largest windowed score)."""
    lines = ["Other thresholds (`robot-rl monitor --margin M`: threshold = M x the calibration episodes' largest "
             f"windowed score, {cal['peak_max']:.2f}), the same runs:", "",
             "| margin | threshold | false alarms in distribution | failures detected in time (all conditions) | "
             "alarms in out-of-distribution runs that did not fail |", "|---|---|---|---|---|"]
    for margin in (1.3, 1.6, 2.0, 2.5, 3.0):
        th = margin * cal["peak_max"]
        s = {k: summarize(with_alarms(v, th)) for k, v in traces.items()}
        ind = s[CONDITIONS[0][0]]
        ood = [v for k, v in s.items() if k != CONDITIONS[0][0]]
        lines.append(f"| {margin} | {th:.2f} | {ind['alarms']} of {ind['runs']} | {sum(v['detected'] for v in ood)} "
                     f"of {sum(v['failed'] for v in ood)} | {sum(v['alarms_without_failure'] for v in ood)} of "
                     f"{sum(v['ok'] for v in ood)} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--episodes", type=int, default=20, help="episodes per condition (in distribution: 2x)")
    ap.add_argument("--monitor", type=Path, default=MODEL / "monitor")
    ap.add_argument("--seed-offset", type=int, default=0, help="added to every condition's seeds (default 0)")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()

    meta = json.loads((a.monitor / "monitor.json").read_text())
    threshold, cal = meta["threshold"], meta["calibration"]
    t0 = time.perf_counter()
    results, traces = {}, {}
    for name, rz, base in CONDITIONS:
        n = 2 * a.episodes if rz == TRAINING_RZ else a.episodes
        traces[name] = run_condition(rz, [base + a.seed_offset + i for i in range(n)], a.monitor)
        results[name] = summarize(traces[name])
        print(name, results[name], flush=True)
    all_failed = sum(s["failed"] for k, s in results.items() if not k.startswith("in distribution"))
    all_detected = sum(s["detected"] for k, s in results.items() if not k.startswith("in distribution"))
    indist = results[CONDITIONS[0][0]]
    lines = ["# Dynamics monitor: alarms before failure, false alarms in distribution", "", machine_header(), "",
             f"Command: `python bench/bench_monitor.py {' '.join(sys.argv[1:])}` "
             f"({time.perf_counter() - t0:.0f} s).", "", *table(results, threshold, meta["statistic"]), "",
             f"Out of distribution: the alarm came before the failure in **{all_detected} of {all_failed}** failing "
             f"runs (target >= 80 %). In distribution, where every alarm is false: **{indist['alarms']} false alarms "
             f"in {indist['runs']}** runs (target <= 5 %).", "", *sweep(traces, cal), ""]
    text = "\n".join(lines)
    if a.out:
        a.out.write_text(text)
    print(text)


@pytest.mark.bench
def test_bench_monitor_smoke():
    rows = run_condition(TRAINING_RZ, [700_000_000, 700_000_001, 700_000_002], MODEL / "monitor")
    assert all(r["alarm"] is None for r in rows)


if __name__ == "__main__":
    main()
