"""How well does an exported policy transfer? Held-out reality samples in the Python env and through the ROS 2 loop.

    robot-rl transfer models/cartpole_swingup_sac --samples 20
    robot-rl transfer runs/rand/model runs/norand/model --label randomized --label nominal-only   # an ablation
    robot-rl transfer MODEL --no-ros --samples 100                                                 # Python only

Each sample seed ``s`` builds the same randomization sample twice (``make(env_id, randomization, seed=s)``, as
sim_robot does): the ONNX policy runs it in the Python env, and the deployed loop runs it as processes over DDS on
loopback (sim_robot + policy_node with the safety filter + recorder, launch/sim_policy.launch.yaml). The report
(``--out``: report.md, plots, per_sample.csv with each sample's parameters, summary.json, the bags) gives the return
retention against the nominal model, failures (early terminations, joint-limit hits, safety fallbacks, command
timeouts, non-finite commands), the gap between the ROS loop and the Python env, latency, and the ONNX policy
against the commands it sent. Several models run on the same samples side by side. Each ROS run takes the episode
length plus ~5 s (cart-pole swing-up: ~15 s per sample).
"""

from __future__ import annotations

import sys
from pathlib import Path

HELP = "transfer report: a policy on held-out reality samples, Python env vs the ROS 2 loop, vs nominal"


def add_arguments(p) -> None:
    p.add_argument("models", type=Path, nargs="+",
                   help="exported policy directories (policy.onnx + policy.json); the first is the model under test")
    p.add_argument("--label", action="append", default=[], metavar="NAME",
                   help="a name per model, in order (default: the directory names)")
    p.add_argument("--samples", type=int, default=20, help="reality samples (default 20)")
    p.add_argument("--seed", type=int, default=0, help="first sample seed (default 0)")
    p.add_argument("--randomization", default="reality",
                   help="randomization profile of the held-out samples (default reality)")
    p.add_argument("--env", default=None, help="task env id (default: the one in each model's policy.json)")
    p.add_argument("--no-ros", action="store_true", help="Python env only (no ROS 2 loop)")
    p.add_argument("--duration", type=float, default=None,
                   help="seconds per ROS run (default: the episode length + 5 s)")
    p.add_argument("--trigger", choices=("sensor", "timer"), default="sensor",
                   help="policy_node trigger (default sensor)")
    p.add_argument("--out", type=Path, default=Path("runs/transfer"),
                   help="report directory (default runs/transfer)")
    p.add_argument("--monitor", action="store_true",
                   help="run policy_node with each model's dynamics monitor (MODEL/monitor, robot-rl monitor): the "
                        "alarm latches the e-stop as on the robot; alarms are counted")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    from robot_rl.transfer import TransferError, TransferSettings, run_transfer, summarize, write_report

    try:
        settings = TransferSettings(models=tuple(args.models), labels=tuple(args.label), samples=args.samples,
                                    seed=args.seed, randomization=args.randomization, ros=not args.no_ros,
                                    duration_s=args.duration, trigger=args.trigger, out_dir=args.out,
                                    progress=not args.no_progress, env_id=args.env, monitor=args.monitor)
        results = run_transfer(settings)
    except (TransferError, KeyError, FileNotFoundError) as exc:
        print(f"robot-rl transfer: {exc}", file=sys.stderr)
        return 2
    report = write_report(results, args.out)
    for entry in results["models"]:
        s = summarize(entry)
        line = (f"{s['label']}: nominal {s['nominal_return']['mean']:.1f}; reality (Python) "
                f"{s['python_return']['mean']:.1f} +- {s['python_return']['std']:.1f}, worst "
                f"{s['python_return']['worst']:.1f}, retention {s['python_retention']['mean']:.2f}")
        if "ros_return" in s:
            line += (f"; ROS 2 loop {s['ros_return']['mean']:.1f} +- {s['ros_return']['std']:.1f}, worst "
                     f"{s['ros_return']['worst']:.1f} (ROS - Python {s['ros_minus_python']['mean']:+.1f}, max |gap| "
                     f"{s['ros_minus_python']['max_abs']:.1f})")
        print(line)
    print(f"report: {report}")
    return 0
