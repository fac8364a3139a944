"""Train a policy (SAC, PPO, offline IQL family) or a PETS dynamics ensemble from a config into a run directory.

    robot-rl train --config config/sac_cartpole_swingup.yaml [--set sac.batch_size=512 ...] [--run-dir runs/x]
    robot-rl train --resume runs/x [--set train.total_steps=200000]

The run directory gets config.yaml (resolved), metrics.csv, eval.csv, tb/ (TensorBoard), checkpoints/latest.pt
(resumable) and best.pt (best evaluation), learning_curve.png and run.json. See docs/training.md. PETS
(``algo: pets``, config/pets_*.yaml) writes the same files with the ensemble in its checkpoints (not resumable; export
with ``python -m robot_rl.train.pets_artifact RUN_DIR --out DIR``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

HELP = "train SAC / PPO / IQL / PETS from a config into a run directory (resumable except PETS)"


def add_arguments(p) -> None:
    p.add_argument("--config", type=Path, help="experiment YAML (config/sac_*.yaml, ppo_*.yaml, pets_*.yaml, ...)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set sac.batch_size=512 (repeatable)")
    p.add_argument("--run-dir", type=Path, help="run directory (default runs/<config name>-seed<seed>-<time>)")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue the run in RUN_DIR from its latest "
                   "checkpoint (only train.* may be overridden)")


def env_problem(env_id: str, randomization) -> str | None:
    """Why ``env_id`` cannot be trained on (unknown id, non-Box spaces, randomization on a plain Gymnasium env),
    found by building it once before the run directory exists; None when it builds.
    """
    import gymnasium as gym

    from robot_rl.scale.envs import make_env

    try:
        make_env(env_id, randomization=randomization, seed=0).close()
    except KeyError as exc:
        return str(exc.args[0]) if exc.args else repr(exc)
    except (ValueError, ImportError, gym.error.Error) as exc:
        return str(exc)
    return None


def run(args) -> int:
    from robot_rl.train.checkpoint import CheckpointError
    from robot_rl.train.config import load_experiment
    from robot_rl.train.runner import load_resume_config, train

    if args.resume is not None:
        if args.config is not None or args.run_dir is not None:
            print("robot-rl train: --resume RUN_DIR takes neither --config nor --run-dir", file=sys.stderr)
            return 2
        run_dir = args.resume
        try:
            cfg = load_resume_config(run_dir, args.overrides)
        except CheckpointError as exc:
            print(f"robot-rl train: {exc}", file=sys.stderr)
            return 2
    else:
        if args.config is None:
            print("robot-rl train: give --config FILE (or --resume RUN_DIR)", file=sys.stderr)
            return 2
        cfg = load_experiment(args.config, args.overrides)
        env = getattr(cfg, "env", None)  # PETS names its env at the top level (env_id, randomization)
        key, env_id, randomization = (("env.id", env.id, env.randomization) if env is not None else
                                      ("env_id", getattr(cfg, "env_id", None), getattr(cfg, "randomization", None)))
        problem = env_problem(env_id, randomization) if env_id else None
        if problem:
            print(f"robot-rl train: {key} {env_id!r}: {problem}", file=sys.stderr)
            return 2
        run_dir = args.run_dir or Path("runs") / f"{args.config.stem}-seed{cfg.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        info = train(cfg, run_dir, resume=args.resume is not None)
    except (CheckpointError, FileExistsError) as exc:
        print(f"robot-rl train: {exc}", file=sys.stderr)
        return 1
    final = info.get("final_eval") or {}
    print(f"run {run_dir}: {info['env_steps']} steps in {info['wall_time_s']:.0f} s; final eval return "
          f"{final.get('return_mean', float('nan')):.1f} +- {final.get('return_std', float('nan')):.1f}; "
          f"best {info.get('best_eval_return')}")
    return 0
