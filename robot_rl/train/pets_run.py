"""``robot-rl train`` for PETS (``algo: pets``): the PETS loop of ``robot_rl.algos.pets.train_pets`` writing a run
directory like the other learners.

Run directory: ``config.yaml`` (resolved ``PetsConfig``), ``metrics.csv`` (one row per training episode: ``step`` =
training transitions so far, ``train_return``, upright fraction, disagreement, model loss), ``eval.csv`` (after every
refit: CEM-MPC episodes of ``eval_steps`` on held-out seeds; ``step`` = transitions the model was fit on),
``checkpoints/latest.pt`` (the ensemble after the latest refit) and ``best.pt`` (best evaluation), ``tb/``,
``learning_curve.png`` and ``run.json``. Checkpoints hold the ensemble (``kind: pets_model``), not a resumable loop
state: a PETS run is short (minutes) and is re-run rather than resumed. Export: ``robot_rl.train.pets_artifact``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from robot_rl.core.config import config_hash, dump_yaml, to_dict
from robot_rl.train.checkpoint import FORMAT_VERSION, CheckpointError, save_atomic
from robot_rl.train.logger import CsvLog, TensorBoard, plot_learning_curve
from robot_rl.train.run_dir import code_version, write_json

CHECKPOINT_KIND = "pets_model"


def ensemble_payload(model, cfg, meta: dict, metrics: dict) -> dict[str, Any]:
    """Checkpoint content: the ensemble's architecture and weights (weights-only loadable)."""
    return {"format_version": FORMAT_VERSION, "kind": CHECKPOINT_KIND, "meta": {**meta, "metrics": metrics},
            "ensemble": {"nx": model.nx, "nu": model.nu, "angle_indices": list(model.angles),
                         "n_members": model.n_members, "hidden": list(cfg.hidden), "activation": cfg.activation,
                         "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()}}}


def train_pets_run(cfg, run_dir: str | Path, *, resume: bool = False) -> dict[str, Any]:
    """Run PETS ``cfg`` (a ``PetsConfig``) into ``run_dir``. Returns the ``run.json`` content."""
    from tqdm import tqdm

    # PETS pulls in the planners (and their numba kernels): imported when a PETS run starts, not with the runner
    from robot_rl.algos.pets import EpisodeLog, EvalLog, train_pets

    run_dir = Path(run_dir)
    if resume:
        raise CheckpointError(f"cannot resume {run_dir}: PETS runs are not resumable (checkpoints hold the ensemble "
                              f"only); start a new run")
    ckpt_dir = run_dir / "checkpoints"
    if (ckpt_dir / "latest.pt").exists():
        raise FileExistsError(f"run directory {run_dir} already holds a training run; choose another --run-dir")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(dump_yaml(cfg))
    meta = {"env_id": cfg.env_id, "algo": "pets", "seed": cfg.seed, "config": to_dict(cfg),
            "config_hash": config_hash(cfg), "code_version": code_version()}
    run_info: dict[str, Any] = {**{k: meta[k] for k in ("env_id", "algo", "seed", "config_hash", "code_version")},
                                "run_dir": str(run_dir), "status": "running", "env_steps": 0}
    write_json(run_dir / "run.json", run_info)
    metrics_log, eval_log = CsvLog(run_dir / "metrics.csv"), CsvLog(run_dir / "eval.csv")
    tb = TensorBoard(run_dir / "tb")
    total = cfg.random_episodes + cfg.episodes
    bar = tqdm(total=total, unit="episode", disable=not cfg.progress, dynamic_ncols=True,
               desc=f"pets {cfg.env_id}")
    state: dict[str, Any] = {"best": -math.inf, "last_eval": {}, "env_steps": 0, "model": None}
    t0 = time.perf_counter()

    def on_event(event) -> None:
        if isinstance(event, EpisodeLog):
            state["env_steps"] = event.env_steps
            row = {"step": event.env_steps, "episode": event.episode, "kind": event.kind,
                   "train_return": event.env_return, "upright_fraction_last_second":
                   event.upright_fraction_last_second, "mean_disagreement": event.mean_disagreement,
                   "model_loss": event.model_loss, "episode_wall_s": event.wall_s,
                   "time_s": time.perf_counter() - t0}
            metrics_log.write(row)
            tb.scalars("train", {k: v for k, v in row.items() if k != "kind"}, event.env_steps)
            bar.update(1)
            bar.set_postfix(train_return=f"{event.env_return:.1f}")
        elif isinstance(event, EvalLog):
            row = {"step": event.env_steps, "refits": event.refits, "return_mean": event.return_mean,
                   "return_std": event.return_std, "return_min": event.return_min, "time_s": event.wall_s}
            eval_log.write(row)
            tb.scalars("eval", row, event.env_steps)
            state["last_eval"] = row
            bar.set_postfix(eval_return=f"{event.return_mean:.1f}")

    def on_refit(model) -> None:
        payload = ensemble_payload(model, cfg, meta, state["last_eval"])
        save_atomic(ckpt_dir / "latest.pt", payload)
        if state["last_eval"] and state["last_eval"]["return_mean"] > state["best"]:
            state["best"] = state["last_eval"]["return_mean"]
            save_atomic(ckpt_dir / "best.pt", payload)
        plot_learning_curve(run_dir, f"PETS {cfg.env_id} (seed {cfg.seed})")

    finished = False
    try:
        train_pets(cfg, log=lambda e: None, callback=on_event, on_refit=on_refit,
                   evaluate_every_refit=cfg.eval_episodes > 0)
        finished = True
    finally:
        bar.close()
        tb.close()
        run_info.update(status="complete" if finished else "interrupted", env_steps=state["env_steps"],
                        wall_time_s=time.perf_counter() - t0, final_eval=state["last_eval"],
                        best_eval_return=state["best"] if math.isfinite(state["best"]) else None)
        write_json(run_dir / "run.json", run_info)
    return run_info

