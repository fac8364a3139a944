"""Experiment sweeps: a grid of config overrides x seeds, each trial a normal run directory, resumable.

Layout of ``out_dir``: ``sweep.json`` (the spec: config, grid, seeds, overrides), ``trials/<point>__seed-<s>/`` (a
run directory made by ``robot_rl.train.train``), ``summary.csv`` (one row per trial), ``summary.md`` (mean +- std of
the final and best evaluation return across seeds per grid point) and ``curves.png`` (mean +- std of each point's
evaluation curve, from the trials' eval.csv).

Resume: running the same sweep again skips trials whose run.json says ``status: complete``, resumes interrupted
ones from their latest checkpoint (``train(..., resume=True)``) and starts the rest; a trial directory without a
checkpoint (killed before its first one) is started over. Trials run as Ray tasks (``backend="ray"``, one CPU each
by default, retried by Ray if their process dies) or one after another in this process (``backend="local"``).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from robot_rl.train.config import load_experiment

log = logging.getLogger("robot_rl.scale")


@dataclass(frozen=True)
class Trial:
    name: str
    """Directory name under ``trials/``: ``<key-value>_..__seed-<seed>``."""
    point: tuple[str, ...]
    """The grid overrides of this trial (``key=value``), without the seed."""
    seed: int
    """Run seed (``seed=<seed>`` override)."""
    run_dir: Path
    """The trial's run directory."""


def parse_grid(items: list[str] | tuple[str, ...]) -> dict[str, list[str]]:
    """``["ppo.learning_rate=1e-3,3e-4", "ppo.n_epochs=5,10"]`` -> ``{key: [values]}`` (insertion order kept)."""
    grid: dict[str, list[str]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip()
        vals = [v.strip() for v in values.split(",")]
        if not sep or not key or not all(vals):
            raise ValueError(f"--grid {item!r}: expected KEY=V1,V2,... (e.g. ppo.learning_rate=1e-3,3e-4)")
        if key == "seed":
            raise ValueError("--grid seed=...: use --seeds N (seeds 0..N-1) or --seed-list")
        if key in grid:
            raise ValueError(f"--grid {key} given twice")
        grid[key] = vals
    return grid


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", text).strip("-")


def plan_trials(grid: dict[str, list[str]], seeds: list[int], out_dir: Path) -> list[Trial]:
    """Cartesian product of the grid (first key outermost) times seeds."""
    points: list[tuple[str, ...]] = [()]
    for key, values in grid.items():
        points = [p + (f"{key}={v}",) for p in points for v in values]
    trials = []
    for point in points:
        label = "_".join(_slug(o.replace("=", "-")) for o in point) or "base"
        for s in seeds:
            name = f"{label}__seed-{s}"
            trials.append(Trial(name, point, int(s), out_dir / "trials" / name))
    return trials


def trial_overrides(trial: Trial, overrides: list[str] | tuple[str, ...]) -> list[str]:
    """Overrides applied to the base config for ``trial`` (sweep-wide first, then the grid point, then the seed)."""
    return [*overrides, *trial.point, f"seed={trial.seed}"]


def trial_status(run_dir: Path) -> str:
    """``complete`` (run.json says so), ``interrupted`` (has a resumable checkpoint), ``partial`` (a directory with
    no checkpoint yet) or ``new``.
    """
    run_json = run_dir / "run.json"
    if run_json.is_file():
        try:
            if json.loads(run_json.read_text()).get("status") == "complete":
                return "complete"
        except json.JSONDecodeError:
            pass
    if (run_dir / "checkpoints" / "latest.pt").is_file():
        return "interrupted"
    return "partial" if run_dir.exists() else "new"


def run_trial(config_path: str, overrides: list[str], run_dir: str) -> dict:
    """Train one trial into ``run_dir``, resuming from its checkpoint when it has one. Returns run.json's content.

    Idempotent, so Ray may retry it after a crash: the retry resumes instead of starting over.
    """
    # the runner (torch, the env stack) is imported where a trial runs, which is a Ray worker on the Ray backend
    from robot_rl.train.runner import train

    run_dir = Path(run_dir)
    status = trial_status(run_dir)
    if status == "complete":
        return json.loads((run_dir / "run.json").read_text())
    if status == "partial":
        shutil.rmtree(run_dir)  # died before its first checkpoint: nothing to resume
    cfg = load_experiment(config_path, overrides)
    return train(cfg, run_dir, resume=status == "interrupted")


def _spec(config_path: Path, grid: dict, seeds: list[int], overrides: list[str]) -> dict:
    return {"config": str(Path(config_path).resolve()), "grid": grid, "seeds": list(seeds),
            "overrides": list(overrides)}


def run_sweep(config_path: str | Path, grid: dict[str, list[str]], seeds: list[int], out_dir: str | Path, *,
              overrides: list[str] | tuple[str, ...] = (), backend: str = "ray", address: str | None = None,
              num_cpus: int | None = None, cpus_per_trial: float = 1.0, max_retries: int = 1) -> dict:
    """Run (or finish) a sweep; returns ``{"trials": [...], "actions": {name: skipped|resumed|started},
    "failed": {name: error}, "summary": path, "plot": path}``.
    """
    out_dir = Path(out_dir)
    config_path = Path(config_path)
    overrides = ["train.progress=false", *overrides]
    spec = _spec(config_path, grid, seeds, overrides)
    spec_path = out_dir / "sweep.json"
    if spec_path.is_file():
        old = json.loads(spec_path.read_text())
        if old != spec:
            diff = sorted(k for k in spec if old.get(k) != spec[k])
            raise ValueError(f"{out_dir} holds a different sweep (differs in {diff}); resume it with the same "
                             f"--config/--grid/--seeds/--set or choose another --out")
    trials = plan_trials(grid, seeds, out_dir)
    for t in trials:  # fail fast, naming the key, before any trial starts
        load_experiment(config_path, trial_overrides(t, overrides))
    out_dir.mkdir(parents=True, exist_ok=True)
    spec_path.write_text(json.dumps(spec, indent=2) + "\n")

    actions = {}
    todo = []
    for t in trials:
        st = trial_status(t.run_dir)
        actions[t.name] = {"complete": "skipped", "interrupted": "resumed"}.get(st, "started")
        if st != "complete":
            todo.append(t)
    log.info("sweep %s: %d trials, %d to run (%d resumed)", out_dir, len(trials), len(todo),
             sum(a == "resumed" for a in actions.values()))
    failed: dict[str, str] = {}
    if todo and backend == "ray":
        failed = _run_on_ray(todo, str(config_path), overrides, address, num_cpus, cpus_per_trial, max_retries)
    elif todo:
        if backend != "local":
            raise ValueError(f"sweep backend must be 'ray' or 'local', got {backend!r}")
        for t in todo:
            try:
                run_trial(str(config_path), trial_overrides(t, overrides), str(t.run_dir))
            except Exception as exc:  # noqa: BLE001 - one failed trial must not stop the others
                failed[t.name] = f"{type(exc).__name__}: {exc}"
                log.error("sweep trial %s failed: %s", t.name, failed[t.name])
    summary = write_summary(trials, grid, out_dir)
    plot = plot_curves(trials, out_dir, title=f"{config_path.stem}: eval return, mean +- std over seeds")
    return {"trials": trials, "actions": actions, "failed": failed, "summary": summary, "plot": plot}


def _run_on_ray(todo: list[Trial], config_path: str, overrides: list[str], address, num_cpus, cpus_per_trial,
                max_retries) -> dict[str, str]:
    from robot_rl.scale.cluster import import_ray, init_ray, shutdown_ray

    owned = init_ray(address, num_cpus)
    ray = import_ray()
    failed: dict[str, str] = {}
    try:
        task = ray.remote(num_cpus=cpus_per_trial, max_retries=max_retries)(run_trial)
        cfg_path = str(Path(config_path).resolve())
        refs = {task.remote(cfg_path, trial_overrides(t, overrides), str(t.run_dir.resolve())): t for t in todo}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            t = refs[done[0]]
            try:
                info = ray.get(done[0])
                log.info("sweep trial %s: %s, final eval return %s", t.name, info.get("status"),
                         (info.get("final_eval") or {}).get("return_mean"))
            except Exception as exc:  # noqa: BLE001 - record and go on with the other trials
                failed[t.name] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc) else ''}"
                log.error("sweep trial %s failed: %s", t.name, failed[t.name])
    finally:
        if owned:
            shutdown_ray()
    return failed


# --------------------------------------------------------------------------- summary and plot


def _read_eval(run_dir: Path) -> list[tuple[float, float]]:
    path = run_dir / "eval.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [(float(r["step"]), float(r["return_mean"])) for r in csv.DictReader(f)]


def _mean_std(values: list[float]) -> tuple[float, float]:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return float("nan"), float("nan")
    return float(np.mean(vals)), float(np.std(vals))


def write_summary(trials: list[Trial], grid: dict, out_dir: Path) -> Path:
    """``summary.csv`` (per trial) and ``summary.md`` (per grid point, mean +- std over seeds); returns the .md."""
    rows = []
    for t in trials:
        info = json.loads((t.run_dir / "run.json").read_text()) if (t.run_dir / "run.json").is_file() else {}
        final = info.get("final_eval") or {}
        rows.append({"trial": t.name, **{o.partition("=")[0]: o.partition("=")[2] for o in t.point}, "seed": t.seed,
                     "status": info.get("status", "missing"), "env_steps": info.get("env_steps"),
                     "final_return": final.get("return_mean"), "best_return": info.get("best_eval_return"),
                     "wall_time_s": info.get("wall_time_s")})
    fields = ["trial", *grid, "seed", "status", "env_steps", "final_return", "best_return", "wall_time_s"]
    with open(out_dir / "summary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    lines = ["| " + " | ".join([*grid, "seeds complete", "final eval return", "best eval return"]) + " |",
             "|" + "---|" * (len(grid) + 3)]
    for point in dict.fromkeys(t.point for t in trials):
        group = [r for r, t in zip(rows, trials) if t.point == point]
        done = [r for r in group if r["status"] == "complete"]
        fm, fs = _mean_std([r["final_return"] for r in done])
        bm, bs = _mean_std([r["best_return"] for r in done])
        vals = [o.partition("=")[2] for o in point]
        lines.append("| " + " | ".join([*vals, f"{len(done)}/{len(group)}", f"{fm:.1f} +- {fs:.1f}",
                                        f"{bm:.1f} +- {bs:.1f}"]) + " |")
    md = out_dir / "summary.md"
    md.write_text("\n".join(lines) + "\n")
    return md


def plot_curves(trials: list[Trial], out_dir: Path, title: str) -> Path:
    """``curves.png``: per grid point, mean +- std over seeds of the evaluation return at the steps all share."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for point in dict.fromkeys(t.point for t in trials):
        curves = [dict(_read_eval(t.run_dir)) for t in trials if t.point == point]
        curves = [c for c in curves if c]
        if not curves:
            continue
        steps = sorted(set.intersection(*(set(c) for c in curves)))
        if not steps:
            continue
        vals = np.array([[c[s] for s in steps] for c in curves])
        mean, std = vals.mean(0), vals.std(0)
        label = (", ".join(point) or "base") + f" (n={len(curves)})"
        ax.plot(steps, mean, "o-", label=label)
        ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
    ax.set_xlabel("env steps")
    ax.set_ylabel("eval episode return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    out = out_dir / "curves.png"
    tmp = out_dir / f".curves.{time.monotonic_ns()}.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(out)
    return out
