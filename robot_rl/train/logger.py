"""Run-directory logging: append-only CSV files (flushed per row), TensorBoard scalars, learning-curve plot."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path


class CsvLog:
    """CSV file with a fixed header (taken from the first row). Each row is flushed so a kill loses at most one."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._fields: list[str] | None = None
        if self.path.exists() and self.path.stat().st_size > 0:
            with open(self.path, newline="") as f:
                self._fields = next(csv.reader(f), None)

    def write(self, row: dict[str, float]) -> None:
        if self._fields is None:
            self._fields = list(row)
            with open(self.path, "w", newline="") as f:
                csv.writer(f).writerow(self._fields)
        if list(row) != self._fields:
            raise ValueError(f"{self.path}: row keys {list(row)} differ from the header {self._fields}")
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow([_fmt(row[k]) for k in self._fields])

    def truncate_after(self, step: int) -> None:
        """Drop rows with ``step > step`` (written after the checkpoint a resumed run continues from)."""
        if not self.path.exists():
            return
        rows = read_csv(self.path)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", newline="") as f:
            if self._fields:
                w = csv.writer(f)
                w.writerow(self._fields)
                for r in rows:
                    if float(r["step"]) <= step:
                        w.writerow([r[k] for k in self._fields])
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


def _fmt(v) -> str:
    if isinstance(v, float):  # numpy floats too (a subclass): repr(np.float64(x)) is "np.float64(x)", not a number
        return "nan" if math.isnan(v) else repr(float(v))
    return str(v)


def read_csv(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


class TensorBoard:
    """Thin wrapper over ``torch.utils.tensorboard.SummaryWriter`` writing under ``<run>/tb``."""

    def __init__(self, log_dir: str | Path):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(log_dir))

    def scalars(self, prefix: str, row: dict[str, float], step: int) -> None:
        for k, v in row.items():
            if k != "step" and isinstance(v, (int, float)) and math.isfinite(v):
                self.writer.add_scalar(f"{prefix}/{k}", v, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def plot_learning_curve(run_dir: str | Path, title: str) -> Path:
    """``learning_curve.png``: training episode return (metrics.csv) and evaluation mean +- std (eval.csv)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    fig, ax = plt.subplots(figsize=(7, 4))
    if (run_dir / "metrics.csv").exists():
        rows = [r for r in read_csv(run_dir / "metrics.csv") if r.get("train_return", "nan") != "nan"]
        ax.plot([float(r["step"]) for r in rows], [float(r["train_return"]) for r in rows], lw=1, alpha=0.6,
                label="train episodes (randomized)")
    if (run_dir / "eval.csv").exists():
        rows = read_csv(run_dir / "eval.csv")
        x = [float(r["step"]) for r in rows]
        m = [float(r["return_mean"]) for r in rows]
        s = [float(r["return_std"]) for r in rows]
        ax.plot(x, m, "o-", label="eval, deterministic, held-out seeds")
        ax.fill_between(x, [a - b for a, b in zip(m, s)], [a + b for a, b in zip(m, s)], alpha=0.2)
    ax.set_xlabel("env steps")
    ax.set_ylabel("episode return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    out = run_dir / "learning_curve.png"
    tmp = run_dir / ".learning_curve.tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, out)
    return out
