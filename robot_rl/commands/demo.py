"""The end-to-end workflow on the cart-pole, in about ten minutes on 2 CPU cores.

    robot-rl demo                   # train SAC (domain randomization) -> export ONNX -> deploy over ROS 2 -> replay
    robot-rl demo --skip-train      # deploy the shipped model (models/cartpole_swingup_sac) instead: seconds

Stages: (1) SAC on robot_rl/CartpoleSwingup-v0 with config/sac_cartpole_swingup.yaml, (2) `robot-rl export` with
the ONNX checker and torch-vs-onnxruntime parity, (3) launch/sim_policy.launch.yaml: sim_robot with a held-out
reality randomization sample, policy_node with the safety filter, recorder (MCAP), (4) replay of the bag: action
agreement and the sim-to-real gap report, (5) a summary table and OUT/report.md with plots and a deployment video.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "end-to-end: train SAC on cart-pole, export ONNX, deploy over ROS 2, replay the bag, write a report"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="output directory (default runs/demo)")
    p.add_argument("--skip-train", action="store_true", help="use the shipped model instead of training")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override the training config, e.g. --set train.total_steps=5000")
    p.add_argument("--duration", type=float, default=16.0, help="closed-loop run time in seconds (default 16)")
    p.add_argument("--reality-seed", type=int, default=7, help="seed of the held-out reality sample (default 7)")
    p.add_argument("--no-video", action="store_true", help="skip rendering the deployment video")


def run(args) -> int:
    from robot_rl.demo import DemoError, DemoSettings, print_summary, run_demo

    if args.duration <= 2:
        print(f"robot-rl demo: --duration must be > 2 s, got {args.duration}", file=sys.stderr)
        return 2
    settings = DemoSettings(out_dir=args.out, overrides=tuple(args.overrides), skip_train=args.skip_train,
                            duration_s=args.duration, reality_seed=args.reality_seed, video=not args.no_video)
    try:
        summary = run_demo(settings)
    except DemoError as exc:
        print(f"robot-rl demo: {exc}", file=sys.stderr)
        return 1
    print_summary(summary)
    return 0
