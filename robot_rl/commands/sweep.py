r"""Sweep an experiment over a grid of config values x seeds on Ray (or locally); resumable.

    robot-rl sweep --config config/ppo_cartpole_balance.yaml --grid ppo.learning_rate=1e-3,3e-4 --seeds 5 \
        [--grid ppo.n_epochs=5,10] [--set train.total_steps=20000] [--out runs/sweeps/lr] \
        [--backend ray|local] [--address HOST:PORT] [--num-cpus N] [--cpus-per-trial 1]

Each trial is a normal run directory (robot_rl.train.train) under OUT/trials/; at the end OUT/summary.csv,
OUT/summary.md (mean +- std over seeds per grid point) and OUT/curves.png. Run the same command again to finish an
interrupted sweep: complete trials are skipped, interrupted ones resume from their checkpoint. See docs/scale.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

HELP = "grid x seeds of training runs on Ray (or locally), summary table + mean/std plot, resumable"


def add_arguments(p) -> None:
    p.add_argument("--config", type=Path, required=True, help="experiment YAML (as for robot-rl train)")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="a config key and its values (repeatable; the sweep is the cartesian product)")
    p.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 per grid point (default 1)")
    p.add_argument("--seed-list", type=str, default=None, metavar="S1,S2", help="explicit seeds instead of --seeds")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override applied to every trial (repeatable)")
    p.add_argument("--out", type=Path, default=None, help="sweep directory (default runs/sweeps/<config name>)")
    p.add_argument("--backend", choices=["ray", "local"], default="ray",
                   help="ray: trials as Ray tasks in parallel; local: one after another in this process")
    p.add_argument("--address", default=None, help="Ray cluster to join (host:port or auto); default: start a "
                   "private cluster on 127.0.0.1")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the private local cluster (default all)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, help="Ray CPUs reserved per trial (default 1)")
    p.add_argument("--max-retries", type=int, default=1, help="Ray retries of a trial whose process died "
                   "(the retry resumes from the trial's checkpoint)")


def run(args) -> int:
    import logging

    from robot_rl.core.config import ConfigError
    from robot_rl.train.sweep import parse_grid, run_sweep

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        grid = parse_grid(args.grid)
        if args.seed_list:
            seeds = [int(s) for s in args.seed_list.split(",")]
        elif args.seeds >= 1:
            seeds = list(range(args.seeds))
        else:
            raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
        out = args.out or Path("runs") / "sweeps" / args.config.stem
        result = run_sweep(args.config, grid, seeds, out, overrides=args.overrides, backend=args.backend,
                           address=args.address, num_cpus=args.num_cpus, cpus_per_trial=args.cpus_per_trial,
                           max_retries=args.max_retries)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        print(f"robot-rl sweep: {exc}", file=sys.stderr)
        return 2
    counts = {a: sum(v == a for v in result["actions"].values()) for a in ("skipped", "resumed", "started")}
    print(f"sweep {out}: {len(result['trials'])} trials ({counts['skipped']} already complete, {counts['resumed']} "
          f"resumed, {counts['started']} started)")
    print(result["summary"].read_text(), end="")
    print(f"summary: {result['summary']}  plot: {result['plot']}")
    for name, err in result["failed"].items():
        print(f"robot-rl sweep: trial {name} failed: {err}", file=sys.stderr)
    return 1 if result["failed"] else 0
