"""Offline goal-conditioned RL on an external benchmark: OGBench's pointmaze-medium-navigate, robot_rl's HIQL, GC-IQL
and GCBC beside the OGBench paper's published results.

    python bench/bench_ogbench.py --algos hiql gciql gcbc --seeds 0 1   # generates the data once, trains, reports
    python bench/bench_ogbench.py --report                          # report from the cached runs
    pytest -m bench bench/bench_ogbench.py                          # a small run of the whole pipeline

Data: ``bench/ogbench_pointmaze.py`` generates the dataset with OGBench's own environment and maze oracle at the
documented size (1000 episodes x 1001 steps, action noise 0.5; OGBench's datasets themselves download at run time,
which this machine cannot), cached under ``--data``. Learners: ``gciql`` = bench/configs/gciql_ogbench_pointmaze.yaml
(OGBench's GCIQL settings for this dataset: DDPG+BC extraction with alpha 0.003, expectile 0.9), ``gcbc`` =
bench/configs/gcbc_ogbench_pointmaze.yaml, ``hiql`` = bench/configs/hiql_ogbench_pointmaze.yaml (OGBench's HIQL
settings); ablations: ``gciql-awr`` (AWR extraction, robot_rl's default, inverse temperature 10), ``gciql-ln``
(OGBench's GELU and layer norm in the value nets) and ``hiql-relu`` (HIQL without them). Evaluation:
OGBench's protocol, its 5 evaluation tasks x ``--episodes-per-task`` episodes from OGBench's own reset, success = the
point reaches its goal (within 1 m) in 1000 steps; every ``steps / 4`` gradient steps. Each run is cached as JSON in
bench/results/ogbench/; the report is bench/results/ogbench.md with ogbench_curves.png.

The paper's numbers (Park et al., "OGBench: Benchmarking Offline Goal-Conditioned RL", ICLR 2025, Table 2: success
[%] on pointmaze-medium-navigate-v0, mean +- std over 8 seeds) come from 1M gradient steps with batch 1024 and 3 x 512
networks with layer norm; ours run at the size this 2-core CPU trains in minutes (see the configs).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import ogbench_pointmaze as pm  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from _machine import cache_run, machine_header  # noqa: E402
from _machine import load_runs as _load_runs  # noqa: E402

from robot_rl.train.config import load_experiment  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
CACHE = RESULTS / "ogbench"
DEFAULT_DATA = Path.home() / ".cache" / "robot_rl" / "ogbench" / "pointmaze-medium-navigate-v0"
EVAL_SEED = 777  # numpy seed of OGBench's reset noise during evaluation
ALGOS = {
    "gciql": ("bench/configs/gciql_ogbench_pointmaze.yaml", []),
    "gciql-awr": ("bench/configs/gciql_ogbench_pointmaze.yaml", ["gciql.actor_loss=awr", "gciql.beta=10.0"]),
    "gciql-ln": ("bench/configs/gciql_ogbench_pointmaze.yaml",
                 ["gciql.activation=gelu", "gciql.value_layer_norm=true"]),
    "gcbc": ("bench/configs/gcbc_ogbench_pointmaze.yaml", []),
    "hiql": ("bench/configs/hiql_ogbench_pointmaze.yaml", []),
    "hiql-relu": ("bench/configs/hiql_ogbench_pointmaze.yaml", ["hiql.activation=relu", "hiql.layer_norm=false"]),
}
PAPER = {"GCBC": (9, 6), "GCIVL": (63, 6), "GCIQL": (53, 8), "QRL": (82, 5), "CRL": (29, 7), "HIQL": (79, 5)}


def dataset(path: Path = DEFAULT_DATA, episodes: int = 1000) -> Path:
    """The generated dataset at ``path`` (made once; a partial one from a killed run is regenerated)."""
    meta = path / "data" / "metadata.json"
    if meta.is_file() and json.loads(meta.read_text()).get("total_episodes") == episodes:
        return path
    if path.exists():
        import shutil

        shutil.rmtree(path)
    t0 = time.perf_counter()
    pm.generate(path, episodes=episodes)
    print(f"generated {path} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return path


def policy_fn(module):
    def act(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(x)[None])[0].numpy()

    return act


def run_one(algo: str, seed: int, data: Path, *, steps: int | None = None, episodes_per_task: int = 50,
            cache: Path | None = CACHE) -> dict:
    """Train ``algo`` on ``data``, evaluating with OGBench's protocol 4 times; cache the result as JSON."""
    torch.set_num_threads(1)
    config, sets = ALGOS[algo]
    overrides = [f"dataset.path={data}", f"seed={seed}", *sets] + ([f"train.total_steps={steps}"] if steps else [])
    cfg = load_experiment(ROOT / config, overrides)
    total = cfg.train.total_steps
    learner = cfg.make_learner()
    learner.begin_segment(0)
    curve, wall = [], 0.0
    for k in np.linspace(total / 4, total, 4).astype(int):
        t = time.perf_counter()
        learner.train_until(int(k))
        wall += time.perf_counter() - t
        ev = pm.evaluate(policy_fn(learner.policy_module().eval()), episodes_per_task=episodes_per_task,
                         seed=EVAL_SEED)
        curve.append((int(k), ev["overall"], ev["tasks"]))
        print(f"{algo} seed {seed} step {k}: success {ev['overall']:.2f} {ev['tasks']} ({wall:.0f} s training)",
              file=sys.stderr, flush=True)
    res = {"algo": algo, "seed": seed, "steps": total, "config": config, "overrides": sets, "curve": curve,
           "final": curve[-1][1], "tasks": curve[-1][2], "train_s": wall, "episodes_per_task": episodes_per_task,
           "transitions": learner.dataset.n_steps}
    return cache_run(res, cache, f"{algo}-seed{seed}")


def load_runs(cache: Path = CACHE) -> list[dict]:
    return _load_runs(cache)


def write_report(runs: list[dict], out_dir: Path = RESULTS) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    algos = [a for a in ALGOS if any(r["algo"] == a for r in runs)]
    lines = ["# Offline goal-conditioned RL on OGBench pointmaze-medium-navigate", "", machine_header(), "",
             "Generated by `python bench/bench_ogbench.py` (see its docstring). Data generated locally with OGBench "
             "1.2.2's environment and maze oracle at the documented size; evaluation on OGBench's 5 tasks with its "
             "own reset and success. Success in %.", "",
             "| method | source | gradient steps | batch | nets | success per seed | mean +- std "
             "| per task (seed mean) | training time |", "|---|---|---|---|---|---|---|---|---|"]
    for algo in algos:
        rs = sorted((r for r in runs if r["algo"] == algo), key=lambda r: r["seed"])
        cfg = load_experiment(ROOT / rs[0]["config"], [*rs[0]["overrides"], "dataset.path=unused"])
        hp = getattr(cfg, "gciql", None) or getattr(cfg, "hiql", None) or cfg.gcbc
        finals = [100 * r["final"] for r in rs]
        tasks = np.mean([r["tasks"] for r in rs], axis=0) * 100
        lines.append(f"| {algo} | robot_rl | {rs[0]['steps'] // 1000}k | {hp.batch_size} | "
                     f"{' x '.join(map(str, hp.hidden))} | {' / '.join(f'{x:.0f}' for x in finals)} | "
                     f"{np.mean(finals):.0f} +- {np.std(finals):.0f} | {' / '.join(f'{x:.0f}' for x in tasks)} | "
                     f"{np.mean([r['train_s'] for r in rs]) / 60:.0f} min |")
    for name, (m, s) in PAPER.items():
        lines.append(f"| {name} | OGBench paper, Table 2 (8 seeds) | 1000k | 1024 | 512 x 512 x 512 | - | {m} +- {s} "
                     f"| - | - |")
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, algo in enumerate(algos):
        for j, r in enumerate(r for r in runs if r["algo"] == algo):
            c = np.asarray([(k, s) for k, s, _ in r["curve"]])
            ax.plot(c[:, 0], 100 * c[:, 1], "o-", color=f"C{i}", alpha=0.7, label=algo if j == 0 else None)
    ax.axhline(PAPER["GCIQL"][0], color="k", ls="--", lw=1, label="OGBench paper GCIQL (1M steps)")
    ax.axhline(PAPER["HIQL"][0], color="k", ls=":", lw=1, label="OGBench paper HIQL (1M steps)")
    ax.set_xlabel("gradient steps")
    ax.set_ylabel("success on OGBench's 5 tasks [%]")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "ogbench_curves.png", dpi=90)
    plt.close(fig)
    finished = sorted(r["finished"] for r in runs)
    lines += ["", f"Runs finished {finished[0]} to {finished[-1]}, at commits "
              f"{', '.join(sorted({r['commit'] for r in runs}))}; {runs[0]['episodes_per_task']} episodes per task; "
              f"{runs[0]['transitions']} transitions.", "", "![curves](ogbench_curves.png)", ""]
    out = out_dir / "ogbench.md"
    out.write_text("\n".join(lines))
    return out


@pytest.mark.bench
def test_pipeline_on_a_small_dataset(tmp_path):
    """Data generation, HIQL, GC-IQL and GCBC training and OGBench's evaluation end to end on 30 episodes."""
    data = dataset(tmp_path / "data", episodes=30)
    for algo in ("hiql", "gciql", "gcbc"):
        r = run_one(algo, 0, data, steps=400, episodes_per_task=2, cache=tmp_path / "runs")
        assert len(r["curve"]) == 4 and 0.0 <= r["final"] <= 1.0 and len(r["tasks"]) == 5, r
    assert write_report(load_runs(tmp_path / "runs"), tmp_path).is_file()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--algos", nargs="+", default=["gciql", "gcbc"], choices=sorted(ALGOS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--steps", type=int, default=None, help="gradient steps (default: the config's)")
    ap.add_argument("--episodes-per-task", type=int, default=50)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="dataset directory (generated if missing)")
    ap.add_argument("--report", action="store_true", help="only write the report from the cached runs")
    args = ap.parse_args()
    if not args.report:
        data = dataset(args.data)
        for seed in args.seeds:
            for algo in args.algos:
                r = run_one(algo, seed, data, steps=args.steps, episodes_per_task=args.episodes_per_task)
                print(f"{algo} seed {seed}: success {r['final']:.2f}, {r['train_s']:.0f} s", flush=True)
    print(write_report(load_runs()).read_text())
    sys.exit(0)
