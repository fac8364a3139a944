"""The training loop shared by every learner: run directory, logging, evaluation, checkpoints, resume.

A learner (``SacLearner``, ``PpoLearner``) provides ``begin_segment(k)``, ``train_until(step)``, ``pop_stats()``,
``policy_module()``, ``policy_spec()``, ``state_dict()`` / ``load_state_dict()`` and ``env_steps``. This loop
calls ``train_until`` up to the next log / eval / checkpoint boundary and handles everything else.

Resume is exact on CPU because checkpoints are taken at *segment* boundaries: at every checkpoint the training envs
are reset with seeds derived from (seed, segment index), in the uninterrupted run and in a resumed one alike, and
the checkpoint holds every other piece of state (networks, optimizers, normalizer, replay, RNGs, counters).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robot_rl.algos.registry import algo_spec
from robot_rl.core.config import ConfigError, config_hash, dump_yaml, to_dict
from robot_rl.scale.envs import make_env, obs_names_of
from robot_rl.train.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    capture_rng,
    load_checkpoint,
    restore_rng,
    save_atomic,
)
from robot_rl.train.config import load_experiment
from robot_rl.train.evaluate import evaluate_episodes
from robot_rl.train.logger import CsvLog, TensorBoard, plot_learning_curve
from robot_rl.train.pets_run import train_pets_run
from robot_rl.train.run_dir import code_version, write_json


def make_learner(cfg):
    """The learner of ``cfg`` (its ``algo`` row of ``robot_rl.algos.registry``)."""
    return algo_spec(cfg.algo).make_learner(cfg)


def configure_torch(threads: int, deterministic: bool) -> None:
    torch.set_num_threads(threads)
    if deterministic != torch.are_deterministic_algorithms_enabled():
        torch.use_deterministic_algorithms(deterministic)


def load_resume_config(run_dir: Path, overrides: list[str]):
    """The saved config of a run; only ``train.*`` may be overridden when resuming (e.g. a longer budget)."""
    bad = [o for o in overrides if not o.partition("=")[0].strip().startswith("train.")]
    if bad:
        raise ConfigError(f"--resume only accepts train.* overrides (the run's config is fixed), got {bad}",
                          source="--set")
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise CheckpointError(f"cannot resume {run_dir}: no config.yaml (not a run directory?)")
    return load_experiment(cfg_path, overrides)


OWN_LOOPS = {"pets": train_pets_run}
"""Registry loops (``AlgoSpec.loop``) with a loop of their own; every other loop kind runs through ``train``'s
segment loop below (``begin_segment`` / ``train_until`` / evaluation / checkpoints)."""


class _Boundaries:
    def __init__(self, tc, start: int = 0):
        self.total = tc.total_steps
        self.log = self._next(start, tc.log_every_steps)
        self.eval = self._next(start, tc.eval_every_steps) if tc.eval_every_steps else self.total
        self.ckpt = self._next(start, tc.checkpoint_every_steps)
        self.tc = tc

    @staticmethod
    def _next(step: int, every: int) -> int:
        return (step // every + 1) * every

    def target(self) -> int:
        return min(self.log, self.eval, self.ckpt, self.total)

    def advance(self, name: str, step: int) -> None:
        every = {"log": self.tc.log_every_steps, "eval": self.tc.eval_every_steps or self.total,
                 "ckpt": self.tc.checkpoint_every_steps}[name]
        setattr(self, name, self._next(step, every))


def train(cfg, run_dir: str | Path, *, resume: bool = False, stop_after_steps: int | None = None) -> dict[str, Any]:
    """Train ``cfg`` (an experiment config) into ``run_dir``; with ``resume`` continue from its latest checkpoint.

    ``stop_after_steps`` ends the loop early (after the checkpoint at that step if one falls there) without the final
    evaluation; tests use it to simulate an interrupted run. Returns the ``run.json`` content.
    """
    run_dir = Path(run_dir)
    loop = algo_spec(cfg.algo).loop
    if loop in OWN_LOOPS:
        return OWN_LOOPS[loop](cfg, run_dir, resume=resume)
    tc = cfg.train
    configure_torch(tc.torch_threads, tc.deterministic)
    ckpt_dir = run_dir / "checkpoints"
    init = _init_checkpoint(tc.init_from, cfg.algo) if tc.init_from and not resume else None
    payload = _open_run_dir(run_dir, ckpt_dir, resume)
    (run_dir / "config.yaml").write_text(dump_yaml(cfg))
    chash = config_hash(cfg)

    learner = make_learner(cfg)
    eval_env = make_env(cfg.env.id, randomization=cfg.env.randomization, seed=tc.eval_seed_start)
    obs_names = obs_names_of(eval_env, learner.n_obs)
    metrics_log, eval_log = CsvLog(run_dir / "metrics.csv"), CsvLog(run_dir / "eval.csv")
    best_eval, elapsed_before, last_eval = _restore(learner, payload, metrics_log, eval_log)
    if init is not None:
        _load_weights(learner, init, tc.init_from)
    learner.begin_segment(learner.segment)
    bounds = _Boundaries(tc, learner.env_steps)
    tb = TensorBoard(run_dir / "tb")
    meta = {"env_id": cfg.env.id, "algo": cfg.algo, "seed": cfg.seed, "config": to_dict(cfg), "config_hash": chash,
            "obs_names": obs_names, "code_version": code_version()}
    run_info = {**{k: meta[k] for k in ("env_id", "algo", "seed", "config_hash", "code_version")},
                "run_dir": str(run_dir), "status": "running", "env_steps": learner.env_steps,
                **({"init_from": str(tc.init_from)} if tc.init_from else {})}
    write_json(run_dir / "run.json", run_info)

    from tqdm import tqdm

    bar = tqdm(total=tc.total_steps, initial=learner.env_steps, unit="step", disable=not tc.progress,
               dynamic_ncols=True, desc=f"{cfg.algo} {cfg.env.id}")
    t0 = time.perf_counter()
    step_at_t0 = learner.env_steps
    finished = False
    try:
        while learner.env_steps < tc.total_steps:
            before = learner.env_steps
            learner.train_until(bounds.target())
            step = learner.env_steps
            bar.update(step - before)
            done = step >= tc.total_steps
            if step >= bounds.log or done:
                _log_train(learner, step, step - step_at_t0, elapsed_before, time.perf_counter() - t0, metrics_log, tb)
                bounds.advance("log", step)
            if step >= bounds.eval or done:
                last_eval = _evaluate_and_log(learner, eval_env, tc, step, eval_log, tb, bar)
                if last_eval["return_mean"] > best_eval:
                    best_eval = last_eval["return_mean"]
                    save_atomic(ckpt_dir / "best.pt", {"format_version": FORMAT_VERSION, "kind": "policy",
                                                       "meta": {**meta, "metrics": last_eval},
                                                       "policy": learner.policy_spec()})
                bounds.advance("eval", step)
            if step >= bounds.ckpt or done:
                learner.begin_segment(learner.segment + 1)
                _save_resume(ckpt_dir / "latest.pt", {**meta, "metrics": last_eval}, learner, best_eval,
                             lambda: elapsed_before + time.perf_counter() - t0)
                plot_learning_curve(run_dir, f"{cfg.algo.upper()} {cfg.env.id} (seed {cfg.seed})")
                bounds.advance("ckpt", step)
            if stop_after_steps is not None and step >= stop_after_steps and not done:
                break
        finished = learner.env_steps >= tc.total_steps
    finally:
        bar.close()
        tb.close()
        learner.close()
        eval_env.close()
        elapsed = elapsed_before + time.perf_counter() - t0
        run_info.update(status="complete" if finished else "interrupted", env_steps=learner.env_steps,
                        wall_time_s=elapsed, final_eval=last_eval, best_eval_return=best_eval
                        if math.isfinite(best_eval) else None)
        write_json(run_dir / "run.json", run_info)
    return run_info


def _open_run_dir(run_dir: Path, ckpt_dir: Path, resume: bool) -> dict | None:
    """The resume checkpoint of ``run_dir`` (``resume``), else None after making sure no run is there yet."""
    if resume:
        payload = load_checkpoint(ckpt_dir / "latest.pt")
        if payload.get("kind") != "resume":
            raise CheckpointError(f"checkpoint {ckpt_dir / 'latest.pt'} is not a resumable training checkpoint")
        return payload
    if (ckpt_dir / "latest.pt").exists():
        raise FileExistsError(f"run directory {run_dir} already holds a training run; use --resume {run_dir} "
                              f"or choose another --run-dir")
    run_dir.mkdir(parents=True, exist_ok=True)
    return None


def _init_checkpoint(path: str, algo: str) -> dict:
    """The checkpoint ``train.init_from`` names, checked to be a training checkpoint of ``algo``."""
    payload = load_checkpoint(Path(path))
    if payload.get("kind") != "resume":
        raise CheckpointError(f"train.init_from: {path} is not a training checkpoint (a run's checkpoints/latest.pt; "
                              f"best.pt holds the policy alone)")
    if payload["meta"].get("algo") != algo:
        raise ConfigError(f"train.init_from: {path} was trained with {payload['meta'].get('algo')!r}, this config "
                          f"trains {algo!r}")
    return payload


def _load_weights(learner, payload: dict, path: str) -> None:
    """Start ``learner`` from the networks, normalizer and optimizer state of ``payload`` (``WEIGHT_KEYS`` of its
    state); everything else (replay, counters, statistics) stays as the new learner has it.
    """
    keys = getattr(learner, "WEIGHT_KEYS", None)
    if keys is None:
        raise ConfigError(f"train.init_from: {type(learner).__name__} cannot start from a checkpoint")
    state = learner.state_dict()
    state.update({k: payload["learner"][k] for k in keys})
    try:
        learner.load_state_dict(state)
    except (ValueError, RuntimeError, KeyError) as exc:  # network sizes or observation layout differ
        raise ConfigError(f"train.init_from: {path} does not fit this config's learner: {exc}") from None


def _restore(learner, payload: dict | None, metrics_log: CsvLog, eval_log: CsvLog) -> tuple[float, float, dict]:
    """``(best eval return, elapsed s, last eval)`` of a resumed run, whose learner, RNGs and logs (rows after the
    checkpoint dropped) are restored here; ``(-inf, 0, {})`` for a new run (``payload`` None).
    """
    if payload is None:
        return -math.inf, 0.0, {}
    learner.load_state_dict(payload["learner"])
    restore_rng(payload["rng"])
    best_eval, elapsed_before = payload["runner"]["best_eval"], payload["runner"]["elapsed_s"]
    last_eval = dict(payload["meta"].get("metrics", {}))
    metrics_log.truncate_after(learner.env_steps)
    eval_log.truncate_after(learner.env_steps)
    return best_eval, elapsed_before, last_eval


def _log_train(learner, step: int, steps: int, elapsed_before: float, elapsed: float, metrics_log: CsvLog,
               tb: TensorBoard) -> None:
    """Log the learner's training statistics at ``step`` (metrics.csv, TensorBoard); ``steps`` were taken in the
    ``elapsed`` s of this process (``elapsed_before``: the run's time before a resume).
    """
    row = {"step": step, **learner.pop_stats(), "time_s": elapsed_before + elapsed, "sps": steps / max(elapsed, 1e-9)}
    metrics_log.write(row)
    tb.scalars("train", row, step)


def _save_resume(path: Path, meta: dict, learner, best_eval: float, elapsed_s) -> None:
    """Write the resume checkpoint: learner state, RNGs and the runner's counters (``elapsed_s()``: the run's time)."""
    save_atomic(path, {
        "format_version": FORMAT_VERSION, "kind": "resume", "meta": meta,
        "policy": learner.policy_spec(), "learner": learner.state_dict(), "rng": capture_rng(),
        "runner": {"best_eval": best_eval, "elapsed_s": elapsed_s()}})


def _evaluate_and_log(learner, eval_env, tc, step: int, eval_log: CsvLog, tb: TensorBoard, bar) -> dict[str, float]:
    """Evaluate the policy at ``step`` and log the result (eval.csv, TensorBoard, the progress bar)."""
    result = _evaluate(learner, eval_env, tc, step)
    eval_log.write(result)
    tb.scalars("eval", result, step)
    bar.set_postfix(eval_return=f"{result['return_mean']:.1f}")
    return result


def _evaluate(learner, eval_env, tc, step: int) -> dict[str, float]:
    policy = learner.policy_module()
    was_training = policy.training
    policy.eval()
    seeds = [tc.eval_seed_start + i for i in range(tc.eval_episodes)]
    eps = evaluate_episodes(policy, eval_env, seeds)
    policy.train(was_training)
    returns = np.array([e["return"] for e in eps])
    success = np.array([e["success"] for e in eps])
    return {"step": step, "return_mean": float(returns.mean()), "return_std": float(returns.std()),
            "return_min": float(returns.min()), "length_mean": float(np.mean([e["length"] for e in eps])),
            "success_rate": float(success.mean()) if not np.isnan(success).any() else float("nan"),
            "physics_errors": float(sum(e["physics_error"] for e in eps))}
