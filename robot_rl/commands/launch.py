"""Run a ROS 2 YAML launch file from launch/ without ``ros2 launch``.

Examples::

    robot-rl launch launch/sim_policy.launch.yaml model:=models/cartpole_lqr --duration 10
    robot-rl launch sim_policy.launch.yaml --print      # show the resolved node command lines, start nothing

The file is looked up as given, then under the package share (``launch/<file>``). Arguments are ``name:=value``.
Each node runs as its own process with ``[name]`` log prefixes; the launch stops when a node exits (its non-zero
exit code is returned), on Ctrl-C, or after ``--duration`` seconds. Supported subset: docs/launch.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "run a ROS 2 YAML launch file (sim_policy, sim_mpc, robot_policy, robot_mpc) with [name] log prefixes"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="launch file, e.g. launch/sim_policy.launch.yaml (or just sim_policy.launch.yaml)")
    p.add_argument("launch_args", nargs="*", metavar="name:=value", help="launch arguments")
    p.add_argument("--duration", type=float, default=None, help="stop every node after this many seconds")
    p.add_argument("--grace", type=float, default=5.0, help="seconds between SIGINT, SIGTERM and SIGKILL on stop")
    p.add_argument("--print", dest="print_only", action="store_true",
                   help="print the declared arguments and resolved node command lines, start nothing")


def _locate(file: str) -> Path:
    from robot_rl.core.assets import find_asset

    p = Path(file)
    if p.exists():
        return p
    return find_asset(file if file.startswith("launch/") else f"launch/{file}")


def run(args: argparse.Namespace) -> int:
    from robot_rl.deploy.launch_file import load_launch, parse_cli_args
    from robot_rl.deploy.launch_runner import node_command, run_launch

    if args.duration is not None and args.duration <= 0:
        print(f"robot-rl launch: --duration must be > 0, got {args.duration}", file=sys.stderr)
        return 2
    desc = load_launch(_locate(args.file), parse_cli_args(args.launch_args))
    if args.print_only:
        for a in desc.args:
            print(f"arg {a.name} = {desc.values[a.name]!r}  ({a.description})")
        for n in desc.nodes:
            print(f"node {n.name}: {' '.join(node_command(n))}")
        return 0
    return run_launch(desc, duration_s=args.duration, grace_s=args.grace)
