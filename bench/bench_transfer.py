"""Does domain randomization pay on the cart-pole swing-up? The shipped recipe (config/sac_cartpole_swingup.yaml,
with the randomization profile it names) against the same recipe without randomization, per training seed, through
``robot-rl transfer`` on the same held-out reality samples.

Per training seed and variant: ``robot-rl train --config config/sac_cartpole_swingup.yaml --set
env.randomization=<profile|null> --set seed=<s>`` then ``robot-rl export`` (skipped when ``--train-dir`` already
holds the exported model ``abl_<variant>_s<seed>/model``; ``--reuse-shipped`` takes models/cartpole_swingup_sac,
which ``make models`` trains with exactly that recipe at the config's seed). Then every model runs on ``--samples``
reality samples in the Python env, and the models of ``--ros-seeds`` also through the ROS 2 loop. Writes the
transfer reports under ``--train-dir``/report_* and a summary table to ``--out``.

    .venv/bin/python bench/bench_transfer.py --seeds 0 1 2 --samples 20 --ros-seeds 0 \\
        --out bench/results/transfer_cartpole.md
    .venv/bin/pytest -m bench bench/bench_transfer.py      # the shipped model, 2 samples, Python env only
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from _machine import machine_header

REPO = Path(__file__).resolve().parents[1]
CONFIG = "config/sac_cartpole_swingup.yaml"
SHIPPED = REPO / "models" / "cartpole_swingup_sac"
_RECIPE = yaml.safe_load((REPO / CONFIG).read_text())
VARIANTS = (_RECIPE["env"]["randomization"], "none")


def train_and_export(train_dir: Path, variant: str, seed: int) -> tuple[Path, float]:
    """The exported model of one variant and training seed (trained here unless present) and the training time."""
    run = train_dir / f"abl_{variant}_s{seed}"
    model = run / "model"
    if (model / "policy.json").exists():
        return model, float("nan")
    cli = [sys.executable, "-m", "robot_rl.cli"]
    t0 = time.perf_counter()
    value = "null" if variant == "none" else variant
    subprocess.run([*cli, "train", "--config", CONFIG, "--set", f"env.randomization={value}", "--set",
                    f"seed={seed}", "--set", "train.progress=false", "--run-dir", str(run)], check=True, cwd=REPO)
    seconds = time.perf_counter() - t0
    subprocess.run([*cli, "export", str(run), "--out", str(model)], check=True, cwd=REPO)
    return model, seconds


def evaluate(models: dict[str, Path], samples: int, ros: bool, out: Path) -> dict:
    from robot_rl.transfer import TransferSettings, run_transfer, summarize, write_report

    s = TransferSettings(models=tuple(models.values()), labels=tuple(models), samples=samples, ros=ros, out_dir=out)
    results = run_transfer(s)
    write_report(results, out)
    return {e["label"]: summarize(e) for e in results["models"]}


def _cell(st: dict) -> str:
    return f"{st['mean']:.1f} +- {st['std']:.1f} (worst {st['worst']:.1f})"


def _avg(rows: list[dict], key: str, stat: str) -> float:
    return float(np.mean([r[key][stat] for r in rows]))


def table(summaries: dict[str, dict], seeds: list[int], ros_seeds: list[int]) -> list[str]:
    lines = ["| training seed | randomization | nominal return | reality return, Python env | retention (worst) | "
             "joint-limit hits nominal / reality | reality return, ROS 2 loop | ROS - Python (max \\|gap\\|) | "
             "safety fallbacks (runs) |", "|---|---|---|---|---|---|---|---|---|"]
    for seed in seeds:
        for v in VARIANTS:
            s = summaries[f"{v}_s{seed}"]
            ros = "-", "-", "-"
            if seed in ros_seeds:
                ros = (_cell(s["ros_return"]), f"{s['ros_minus_python']['mean']:+.1f} "
                       f"({s['ros_minus_python']['max_abs']:.1f})", str(s["ros_failures"]["with_safety_fallbacks"]))
            lines.append(f"| {seed} | {v} | {s['nominal_return']['mean']:.1f} | {_cell(s['python_return'])} | "
                         f"{s['python_retention']['mean']:.2f} ({s['python_retention']['worst']:.2f}) | "
                         f"{s['nominal_limit_hits']} / {s['python_failures']['limit_hit']} | {' | '.join(ros)} |")
    lines += ["", "Over training seeds (mean of the per-seed values):", "",
              "| randomization | nominal | reality mean | reality worst | retention mean | retention worst |",
              "|---|---|---|---|---|---|"]
    for v in VARIANTS:
        rows = [summaries[f"{v}_s{seed}"] for seed in seeds]
        lines.append(f"| {v} | {_avg(rows, 'nominal_return', 'mean'):.1f} | {_avg(rows, 'python_return', 'mean'):.1f}"
                     f" | {_avg(rows, 'python_return', 'worst'):.1f} | {_avg(rows, 'python_retention', 'mean'):.3f} | "
                     f"{_avg(rows, 'python_retention', 'worst'):.3f} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (default 0 1 2)")
    ap.add_argument("--samples", type=int, default=20, help="reality samples per model (default 20)")
    ap.add_argument("--ros-seeds", type=int, nargs="*", default=[0],
                    help="training seeds whose models also run through the ROS 2 loop (default 0)")
    ap.add_argument("--train-dir", type=Path, default=REPO / "runs" / "bench_transfer")
    ap.add_argument("--out", type=Path, default=None, help="results markdown (default: print)")
    ap.add_argument("--reuse-shipped", action="store_true",
                    help=f"use {SHIPPED.relative_to(REPO)} as the recipe's own variant at seed {_RECIPE['seed']} "
                         "instead of training it again")
    a = ap.parse_args()
    models, train_s = {}, {}
    for seed in a.seeds:
        for v in VARIANTS:
            if a.reuse_shipped and v == VARIANTS[0] and seed == _RECIPE["seed"]:
                models[f"{v}_s{seed}"], train_s[f"{v}_s{seed}"] = SHIPPED, float("nan")
                continue
            models[f"{v}_s{seed}"], train_s[f"{v}_s{seed}"] = train_and_export(a.train_dir, v, seed)
    t0 = time.perf_counter()
    summaries = evaluate(models, a.samples, False, a.train_dir / "report_python")
    for seed in a.ros_seeds:
        pair = {f"{v}_s{seed}": models[f"{v}_s{seed}"] for v in VARIANTS}
        summaries.update(evaluate(pair, a.samples, True, a.train_dir / f"report_ros_s{seed}"))
    seconds = time.perf_counter() - t0
    cmd = "python bench/bench_transfer.py " + " ".join(sys.argv[1:])
    lines = ["# Does domain randomization pay? Cart-pole swing-up, through `robot-rl transfer`", "",
             machine_header(), "", f"Command: `{cmd}` ({seconds / 60:.1f} min of transfer runs after training).", "",
             f"SAC, {CONFIG} ({_RECIPE['train']['total_steps'] // 1000}k env steps on {_RECIPE['env']['id']}), "
             f"trained with randomization `{VARIANTS[0]}` and without (`none`), seeds "
             f"{a.seeds}; each model on {a.samples} `reality` samples (seeds 0..{a.samples - 1}); the ROS 2 loop "
             f"for training seeds {a.ros_seeds}. Training times [s]: " +
             ", ".join(f"{k} {v:.0f}" for k, v in train_s.items() if np.isfinite(v)) + ".", "", *table(
                 summaries, a.seeds, a.ros_seeds), ""]
    text = "\n".join(lines)
    if a.out:
        a.out.write_text(text)
    print(text)


@pytest.mark.bench
def test_bench_transfer_smoke(tmp_path):
    s = evaluate({"shipped": SHIPPED}, 2, False, tmp_path)
    assert s["shipped"]["python_return"]["n"] == 2


if __name__ == "__main__":
    main()
