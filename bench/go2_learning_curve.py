"""The Go2 learning curve of a training run: tracking errors, falls and reward against wall time and env steps.

    python bench/go2_learning_curve.py runs/go2_joystick_ship [--out bench/results/go2_curve.png]

Reads the run's metrics.csv (written by the training runner every ``log_every_steps``; the legged env adds
``tracking/lin_vel_error``, ``tracking/yaw_rate_error`` and ``fall_rate``, falls per 20 s episode of walking, under
the training randomization and commands) and draws one figure; prints the table that bench/results/go2.md quotes.
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

COLUMNS = ("step", "time_s", "train_return", "tracking/lin_vel_error", "tracking/yaw_rate_error", "fall_rate")


def read_curve(run_dir: Path) -> list[dict]:
    rows = []
    with open(run_dir / "metrics.csv", newline="") as f:
        for r in csv.DictReader(f):
            row = {k: float(r[k]) if r.get(k) not in (None, "", "nan") else math.nan for k in COLUMNS}
            # reward per step: the weighted terms' sum (before the floor), smooth where episode returns are not (the
            # envs start together, so a logging window holds either many time-limit ends or a few falls)
            row["reward_per_step"] = sum(float(v) for k, v in r.items() if k.startswith("reward/"))
            rows.append(row)
    if not rows:
        raise SystemExit(f"{run_dir}/metrics.csv has no rows")
    return rows


def plot(rows: list[dict], out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["time_s"] / 60 for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(t, [r["tracking/lin_vel_error"] for r in rows], label="|v_xy - command| [m/s]")
    axes[0].plot(t, [r["tracking/yaw_rate_error"] for r in rows], label="|yaw rate - command| [rad/s]")
    axes[0].set_ylabel("tracking error (training commands)")
    axes[1].plot(t, [r["fall_rate"] for r in rows], color="tab:red")
    axes[1].set_ylabel("falls per 20 s of walking")
    axes[1].set_ylim(bottom=0)
    axes[2].plot(t, [r["reward_per_step"] for r in rows], color="tab:green")
    axes[2].set_ylabel("reward per step (sum of weighted terms)")
    for ax in axes:
        ax.set_xlabel("wall time [min]")
        ax.grid(alpha=0.3)
        top = ax.secondary_xaxis("top", functions=(_minutes_to_steps(rows), _steps_to_minutes(rows)))
        top.set_xlabel("env steps [M]")
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def _minutes_to_steps(rows):
    import numpy as np

    t = np.array([r["time_s"] / 60 for r in rows])
    s = np.array([r["step"] / 1e6 for r in rows])
    return lambda x: np.interp(x, t, s)


def _steps_to_minutes(rows):
    import numpy as np

    t = np.array([r["time_s"] / 60 for r in rows])
    s = np.array([r["step"] / 1e6 for r in rows])
    return lambda x: np.interp(x, s, t)


def table(rows: list[dict], every: int = 5) -> str:
    lines = ["| wall time [min] | env steps [M] | planar tracking error [m/s] | yaw-rate error [rad/s] | "
             "falls per 20 s | reward per step |", "|---|---|---|---|---|---|"]
    picked = rows[every - 1::every]
    if rows[-1] not in picked:
        picked.append(rows[-1])
    for r in picked:
        lines.append(f"| {r['time_s'] / 60:.1f} | {r['step'] / 1e6:.2f} | {r['tracking/lin_vel_error']:.3f} | "
                     f"{r['tracking/yaw_rate_error']:.3f} | {r['fall_rate']:.3f} | {r['reward_per_step']:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run_dir", type=Path, help="training run directory (with metrics.csv)")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "go2_curve.png",
                   help="figure to write (default bench/results/go2_curve.png)")
    args = p.parse_args(argv)
    rows = read_curve(args.run_dir)
    plot(rows, args.out, f"PPO on Go2Joystick-v0 ({args.run_dir.name}): {rows[-1]['step'] / 1e6:.1f}M steps in "
                         f"{rows[-1]['time_s'] / 60:.1f} min")
    print(table(rows))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
