"""Does mpc_node's cart-pole MPC (config/mpc_cartpole.yaml) hold the pole on held-out reality samples, inside the
rail limits? Two harnesses, the same plant:

* offline (default): the plant sim_robot runs (``SimPlant`` + ``EnvReality``: the reality sample's masses,
  friction, damping drift, actuator gain, latency, sensor bias and noise, pushes) driven by ``build_mpc``'s
  controller, replanned synchronously once per 0.02 s period with no time budget (this tests control, not timing;
  bench/bench_mpc_node.py and bench/results/mpc_node.md time the node). ``--samples`` reality samples (seeds
  0..N-1) x ``--seconds`` each, for the balance task (starts near upright) and the swing-up (starts hanging).
* ``--ros N``: ``robot-rl launch launch/sim_mpc.launch.yaml seed:=s`` (sim_robot + mpc_node + recorder over DDS on
  loopback, the launch file's defaults: the balance task, the 20 ms replan budget) for ``--seconds`` + 10 s (its
  start-up) per sample, then the recorded /joint_states read back from the bag.

Per sample: held = the pole never fell (|angle| past the balance task's 0.8 rad fall angle) after it was caught
(first up for 1 s in a row); max |x| = the farthest the cart went (the profile's rail limit is 1.8 m).

    .venv/bin/python bench/bench_mpc_reality.py --samples 20 --seconds 60 --ros 20 --out bench/results/mpc_reality.md
    .venv/bin/pytest -m bench bench/bench_mpc_reality.py      # 2 samples x 10 s offline
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from _machine import machine_header

REPO = Path(__file__).resolve().parents[1]
CONFIG = "config/mpc_cartpole.yaml"
FALL_RAD = 0.8  # CartpoleBalance-v0's fall angle
RAIL_M = 1.8  # hardware/cartpole.yaml position limits of the slider
CAUGHT_S = 1.0  # the pole counts as caught once it stays up this long


def _summary(x: np.ndarray, angle: np.ndarray, dt: float) -> dict:
    """Held / max |x| / seconds to caught (first up for CAUGHT_S in a row: a swing-up may pass through upright
    before it catches the pole) / seconds down after that, from slider and hinge samples."""
    a = np.arctan2(np.sin(angle), np.cos(angle))
    up = np.abs(a) < FALL_RAD
    k = max(1, round(CAUGHT_S / dt))
    run = np.convolve(up.astype(int), np.ones(k, dtype=int), "valid") == k  # up for k samples from here on
    first = int(np.argmax(run)) if run.any() else None
    down_s = float(np.sum(~up[first:]) * dt) if first is not None else float("nan")
    return {"held": first is not None and down_s == 0.0, "max_x": float(np.max(np.abs(x))),
            "up_s": None if first is None else first * dt, "down_s": down_s}


def run_offline(env_id: str, seed: int, seconds: float, overrides=()) -> dict:
    """One reality sample, synchronous MPC (module docstring)."""
    from robot_rl.control.factory import MpcConfig, build_mpc
    from robot_rl.core.config import load_config
    from robot_rl.deploy.sim_plant import EnvReality, SimPlant
    from robot_rl.envs import make

    env = make(env_id, randomization="reality", seed=seed)
    base = env.unwrapped
    reality = EnvReality(env, base.np_random)
    plant = SimPlant(base.profile, base.model, base.data, reality=reality, rng=np.random.default_rng(seed),
                     command_timeout_s=1.0)
    plant.latency_s += reality.action_latency_s  # as sim_robot does
    rt = build_mpc(load_config(MpcConfig, REPO / CONFIG, overrides=["mpc.replan_budget_s=1.0", *overrides]))
    ctl, dt = rt.controller, base.profile.control_period_s
    q, v, _ = plant.measure()
    rt.warm_start(rt.state_from_joints(q, v))
    n = round(seconds / dt)
    xs, angles = np.zeros(n), np.zeros(n)
    slider, hinge = (base.model.jnt_qposadr[base.model.joint(j).id] for j in ("slider", "hinge"))
    t = 0.0
    for k in range(n):
        q, v, _ = plant.measure()
        x = rt.state_from_joints(q, v)
        ctl.replan(x, t)
        plant.on_command(rt.command_from_control(ctl.action(x, t)), t)
        plant.advance(t + dt - 1e-9)
        t += dt
        xs[k], angles[k] = base.data.qpos[slider], base.data.qpos[hinge]
    return {**_summary(xs, angles, dt), "reward": reality.episode_return / n, "seed": seed}


def run_ros(seed: int, seconds: float, env: dict) -> dict:
    """One reality sample through ``launch/sim_mpc.launch.yaml`` (module docstring)."""
    from robot_rl.data.bag_reader import read_bag
    from robot_rl.data.bags import decode_joint_states
    from robot_rl.data.checks import LoadReport

    tmp = Path(tempfile.mkdtemp(prefix="bench_mpc_reality_"))
    cmd = [sys.executable, "-m", "robot_rl.cli", "launch", str(REPO / "launch" / "sim_mpc.launch.yaml"),
           f"seed:={seed}", f"bag:={tmp / 'bag'}", f"state_dir:={tmp / 'state'}", "--duration", str(seconds + 10)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 120, cwd=REPO)
    out = proc.stdout + proc.stderr
    report = LoadReport(source=str(tmp / "bag"))
    try:
        _, stamp, q, _, _ = decode_joint_states(read_bag(tmp / "bag"), "/joint_states", ["slider", "hinge"], report,
                                                [])
    except Exception as exc:  # noqa: BLE001 - reported in the table
        return {"seed": seed, "error": f"{type(exc).__name__}: {exc}", "tail": out[-2000:]}
    if len(q) < 10:
        return {"seed": seed, "error": f"{len(q)} joint states recorded", "tail": out[-2000:]}
    dt = float(np.median(np.diff(stamp))) * 1e-9
    planner = [ln.split("planner: ", 1)[1] for ln in out.splitlines() if "planner: replans=" in ln]
    stats = dict(kv.split("=", 1) for kv in planner[-1].split(", ")) if planner else {}
    return {**_summary(q[:, 0], q[:, 1], dt), "seed": seed, "recorded_s": (stamp[-1] - stamp[0]) * 1e-9,
            "misses": stats.get("deadline_misses", "?"), "fallback": stats.get("fallback_actions", "?")}


def _held(r: dict) -> str:
    return "yes" if r["held"] else "no ({:.2f} s down)".format(r["down_s"])


def _rows(results: list[dict]) -> list[str]:
    lines = ["| sample (seed) | held | max \\|x\\| [m] | caught at [s] | mean reward |", "|---|---|---|---|---|"]
    for r in results:
        up = "never" if r["up_s"] is None else f"{r['up_s']:.2f}"
        lines.append(f"| {r['seed']} | {_held(r)} | {r['max_x']:.2f} | {up} | {r['reward']:.3f} |")
    return lines


def _verdict(results: list[dict], what: str) -> str:
    held = sum(r["held"] for r in results)
    inside = sum(r["max_x"] < RAIL_M for r in results)
    worst = max(r["max_x"] for r in results)
    return (f"{what}: held on **{held} of {len(results)}** samples; inside the rail on {inside} of {len(results)} "
            f"(farthest {worst:.2f} m of {RAIL_M} m).")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=20, help="offline reality samples per task (seeds 0..N-1)")
    ap.add_argument("--tasks", default="balance,swingup", help="offline tasks: balance, swingup or both")
    ap.add_argument("--seconds", type=float, default=60.0, help="seconds per sample")
    ap.add_argument("--swingup-seconds", type=float, help="seconds per swing-up sample (default: --seconds)")
    ap.add_argument("--ros", type=int, default=0, help="also run this many samples through the ROS launch file")
    ap.add_argument("--out", type=Path, help="write the markdown report here")
    a = ap.parse_args(argv)
    from tqdm import tqdm

    t0 = time.monotonic()
    offline = {}
    swing_s = a.swingup_seconds or a.seconds
    tasks = {"balance": ("robot_rl/CartpoleBalance-v0", a.seconds), "swingup": ("robot_rl/CartpoleSwingup-v0", swing_s)}
    chosen = [t.strip() for t in a.tasks.split(",") if t.strip()]
    if any(t not in tasks for t in chosen):
        ap.error(f"--tasks: choose from {list(tasks)}, got {chosen}")
    for env_id, secs in ([tasks[t] for t in chosen] if a.samples > 0 else []):
        offline[env_id] = [run_offline(env_id, s, secs)
                           for s in tqdm(range(a.samples), desc=env_id.split("/")[1], unit="sample")]
    ros = []
    if a.ros:
        env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", PYTHONUNBUFFERED="1")
        env.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid() + 2).randint(150, 199)))
        ros = [run_ros(s, a.seconds, env) for s in tqdm(range(a.ros), desc="ROS launch", unit="sample")]
    cmd = "python bench/bench_mpc_reality.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = ["# Cart-pole MPC on held-out reality samples: does it hold the pole inside the rail?", "",
             machine_header(), "", f"Command: `{cmd}` ({time.monotonic() - t0:.0f} s)", "",
             f"Controller: `{CONFIG}` (iLQR, horizon 100, 2 iterations per replan, cost "
             "config/costs/cartpole_swingup.yaml with its `rail` barrier at +-1.5 m). Plant: sim_robot's "
             f"(`SimPlant` + `EnvReality`, the `reality` randomization sample of each seed). {a.seconds:g} s per "
             f"sample ({swing_s:g} s for the swing-up); held = never past {FALL_RAD} rad once caught (up for "
             f"{CAUGHT_S:g} s in a row).", ""]
    for env_id, results in offline.items():
        lines += [f"## Offline, {env_id} ({len(results)} samples, synchronous replans, no time budget)", "",
                  _verdict(results, "Verdict"), "", *_rows(results), ""]
    if ros:
        ok = [r for r in ros if "error" not in r]
        lines += [f"## Through ROS: launch/sim_mpc.launch.yaml (balance, 20 ms replan budget), {len(ros)} samples",
                  "", _verdict(ok, "Verdict") if ok else "no sample ran", "",
                  "| seed | held | max \\|x\\| [m] | recorded [s] | deadline misses | fallback actions |",
                  "|---|---|---|---|---|---|"]
        for r in ros:
            if "error" in r:
                lines.append(f"| {r['seed']} | error: {r['error']} |||||")
                continue
            lines.append(f"| {r['seed']} | {_held(r)} | {r['max_x']:.2f} | {r['recorded_s']:.1f} | {r['misses']} | "
                         f"{r['fallback']} |")
        lines.append("")
    text = "\n".join(lines)
    print(text)
    if a.out:
        a.out.write_text(text)
    return 0


@pytest.mark.bench
def test_mpc_reality_short():
    """``make bench``: two balance samples hold the pole 10 s inside the rail."""
    for seed in (0, 1):
        r = run_offline("robot_rl/CartpoleBalance-v0", seed, 10.0)
        assert r["held"] and r["max_x"] < RAIL_M, r


if __name__ == "__main__":
    sys.exit(main())
