"""Evaluate a trained policy deterministically on held-out randomization seeds.

    robot-rl evaluate runs/x --episodes 20 [--randomization reality] [--seed 2000000000]
    robot-rl evaluate runs/go2 --tracking [--episodes 20]       # legged tasks: does it walk?

Prints mean/std return, success rate (at the last step, and held unbroken for the last ``--hold-s`` seconds), the
final goal distance of goal tasks, and a per-episode table (seed, return, length, success, held s, goal distance).
Episodes use env seeds ``S, S+1, ...`` (default S = 2e9, disjoint from training seeds < 1e9 and from periodic
evaluation's 1e9...).
``--tracking`` (legged velocity-tracking tasks) runs ``robot_rl.train.locomotion_eval.tracking_report`` instead:
velocity and yaw-rate tracking errors and falls per held command on ``--episodes`` reality samples.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

HELP = "evaluate a run / checkpoint: mean, std, success rate, per-episode table"

DEFAULT_SEED = 2_000_000_000


def add_arguments(p) -> None:
    p.add_argument("target", type=Path, help="run directory (uses best.pt, else latest.pt) or checkpoint file")
    p.add_argument("--episodes", type=int, default=10, help="number of episodes (default 10)")
    p.add_argument("--randomization", default=None,
                   help="randomization profile (name or path), 'none' = off; default: the run's training profile")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"first episode seed (default {DEFAULT_SEED})")
    p.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    p.add_argument("--hold-s", type=float, default=0.5,
                   help="success held: the fraction of episodes that end with at least this long [s] of unbroken "
                        "success (default 0.5)")
    p.add_argument("--tracking", action="store_true",
                   help="legged tasks: tracking errors and falls per command on --episodes reality samples (20 s "
                        "each, pushes on)")
    p.add_argument("--video", type=Path, default=None,
                   help="also render the first (up to 3) episodes to this .mp4/.gif (robot_rl.viz.run_videos)")


def run(args) -> int:
    import numpy as np

    from robot_rl.scale.envs import make_env
    from robot_rl.train.checkpoint import CheckpointError
    from robot_rl.train.evaluate import evaluate_episodes
    from robot_rl.train.policy import load_policy

    if args.episodes < 1:
        print(f"robot-rl evaluate: --episodes must be >= 1, got {args.episodes}", file=sys.stderr)
        return 2
    try:
        pol = load_policy(args.target)
    except CheckpointError as exc:
        print(f"robot-rl evaluate: {exc}", file=sys.stderr)
        return 2
    if args.tracking:
        return _tracking(args, pol)
    if args.randomization is None:
        randomization = pol.config.get("env", {}).get("randomization")
    else:
        randomization = None if args.randomization.lower() == "none" else args.randomization
    env = make_env(pol.env_id, randomization=randomization, seed=args.seed)
    try:
        rows = evaluate_episodes(pol.module, env, [args.seed + i for i in range(args.episodes)])
    finally:
        env.close()
    returns = np.array([r["return"] for r in rows])
    success = np.array([r["success"] for r in rows])
    held = np.array([r["success_held_s"] for r in rows])
    distance = np.array([r["goal_distance"] for r in rows])
    has_success, has_goal = not np.isnan(success).any(), not np.isnan(distance).any()
    summary = {"checkpoint": str(pol.checkpoint), "env_id": pol.env_id, "algo": pol.algo,
               "randomization": randomization, "episodes": len(rows), "return_mean": float(returns.mean()),
               "return_std": float(returns.std()),
               "success_rate": float(success.mean()) if has_success else None,
               "success_held_rate": float(np.mean(held >= args.hold_s - 1e-9)) if has_success else None,
               "hold_s": args.hold_s,
               "goal_distance_p50": float(np.median(distance)) if has_goal else None,
               "goal_distance_max": float(distance.max()) if has_goal else None, "per_episode": rows}
    if args.video is not None:
        from robot_rl.viz.run_videos import evaluate_video_cli

        evaluate_video_cli(pol, pol.env_id, randomization, args.seed, args.episodes, args.video)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"{pol.algo.upper()} {pol.env_id} from {pol.checkpoint} (randomization: {randomization or 'off'})")
    print(f"{'seed':>12} {'return':>10} {'length':>7} {'success':>8} {'held s':>7} {'goal dist':>9}")
    for r in rows:
        succ = "-" if math.isnan(r["success"]) else ("yes" if r["success"] else "no")
        hs = "-" if math.isnan(r["success_held_s"]) else f"{r['success_held_s']:.2f}"
        gd = "-" if math.isnan(r["goal_distance"]) else f"{r['goal_distance']:.4f}"
        print(f"{r['seed']:>12} {r['return']:>10.2f} {r['length']:>7} {succ:>8} {hs:>7} {gd:>9}")
    sr = "n/a" if summary["success_rate"] is None else f"{summary['success_rate']:.2f}"
    line = (f"return {summary['return_mean']:.2f} +- {summary['return_std']:.2f} over {len(rows)} episodes; "
            f"success rate {sr}")
    if has_success:
        line += f", success held the last {args.hold_s:g} s: {summary['success_held_rate']:.2f}"
    if has_goal:
        line += f"; final goal distance p50 {summary['goal_distance_p50']:.4f}, max {summary['goal_distance_max']:.4f}"
    print(line)
    return 0


def _tracking(args, pol) -> int:
    from robot_rl.envs import is_batched
    from robot_rl.train.locomotion_eval import torch_policy, tracking_report

    if not is_batched(pol.env_id):
        print(f"robot-rl evaluate: --tracking is for legged velocity-tracking tasks, not {pol.env_id}", file=sys.stderr)
        return 2
    randomization = "reality" if args.randomization is None else \
        None if args.randomization.lower() == "none" else args.randomization
    print(f"{pol.algo.upper()} {pol.env_id} from {pol.checkpoint}: {args.episodes} samples ({randomization or 'off'})")
    report = tracking_report(torch_policy(pol.module), pol.env_id, samples=args.episodes,
                             randomization=randomization, seed=args.seed, progress=not args.json)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"falls {report['falls']}/{report['episodes']} episodes; {report['samples_without_fall']}/"
          f"{report['samples']} samples never fell; worst vx MAE {report['worst_vx_mae']:.3f} m/s, worst yaw-rate "
          f"MAE {report['worst_yaw_rate_mae']:.3f} rad/s")
    return 0
