"""Train and calibrate the dynamics monitor of an exported policy (the uncertainty-aware fallback of policy_node).

    robot-rl monitor models/cartpole_swingup_sac                 # -> models/cartpole_swingup_sac/monitor
    robot-rl monitor MODEL --episodes 40 --calibration 40 --randomization default --out DIR

Runs the policy in its own closed loop on sim_robot's plant under its training randomization (``--episodes``),
fits a probabilistic dynamics ensemble to the measured joint-state transitions, exports it (``dynamics.onnx`` +
``dynamics.json``), and calibrates the alarm threshold on ``--calibration`` fresh in-distribution episodes
(``monitor.json``: ``--margin`` x the largest windowed score seen). policy_node loads it with
``monitor:=<dir>``: when the windowed one-step surprise exceeds the threshold (the robot no longer behaves like the
simulator the policy was trained in), it latches the e-stop (the profile's safe command) and says so on /diagnostics.
See docs/transfer.md ("Dynamics monitor") and bench/results/monitor.md. About 1-2 min for the cart-pole.
"""

from __future__ import annotations

import sys
from pathlib import Path

HELP = "train and calibrate a policy's dynamics monitor (policy_node's uncertainty-aware fallback)"


def add_arguments(p) -> None:
    p.add_argument("model", type=Path, help="exported policy directory (policy.onnx + policy.json)")
    p.add_argument("--out", type=Path, default=None, help="monitor directory (default MODEL/monitor)")
    p.add_argument("--episodes", type=int, default=40, help="closed-loop training episodes (default 40)")
    p.add_argument("--calibration", type=int, default=40, help="fresh episodes for the threshold (default 40)")
    p.add_argument("--randomization", default=None,
                   help="randomization of both (default: the policy's training randomization; 'none' = off)")
    p.add_argument("--window", type=int, default=25, help="control periods averaged into the score (default 25)")
    p.add_argument("--reduce", choices=("max", "mean"), default="max",
                   help="a transition's per-joint-state scores -> one: the most surprised dimension (max, default) "
                        "or their mean")
    p.add_argument("--margin", type=float, default=1.3,
                   help="threshold = margin x the largest calibration score (default 1.3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the episodes and the fit (default 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    from robot_rl.export.runtime import ArtifactError
    from robot_rl.train.monitor_fit import MonitorSettings, fit_monitor

    for name, value, low in (("--episodes", args.episodes, 2), ("--calibration", args.calibration, 1),
                             ("--window", args.window, 1)):
        if value < low:
            print(f"robot-rl monitor: {name} must be >= {low}, got {value}", file=sys.stderr)
            return 2
    if not args.margin >= 1.0:
        print(f"robot-rl monitor: --margin must be >= 1, got {args.margin}", file=sys.stderr)
        return 2
    if not (args.model / "policy.json").is_file():
        print(f"robot-rl monitor: {args.model}: no policy.json (export a run first)", file=sys.stderr)
        return 2
    settings = MonitorSettings(episodes=args.episodes, calibration=args.calibration, randomization=args.randomization,
                               window=args.window, reduce=args.reduce, margin=args.margin, seed=args.seed,
                               progress=not args.no_progress)
    out = args.out or args.model / "monitor"
    try:
        meta = fit_monitor(args.model, out, settings)
    except (ArtifactError, ValueError, KeyError, FileNotFoundError) as exc:
        print(f"robot-rl monitor: {exc}", file=sys.stderr)
        return 2
    c = meta["calibration"]
    print(f"wrote {out}: ensemble on {meta['training']['transitions']} transitions "
          f"(randomization {meta['randomization']}); calibration peaks p50 {c['peak_p50']:.2f}, max "
          f"{c['peak_max']:.2f} over {c['episodes']} episodes -> threshold {meta['threshold']:.2f}")
    return 0
