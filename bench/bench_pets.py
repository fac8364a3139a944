"""PETS on the cart-pole swing-up: CEM replan time on the ensemble, and return vs env steps next to this project's SAC.

Run as a script (``python bench/bench_pets.py``, writes bench/results/pets.md and pets_vs_sac.png) or through pytest
(``pytest -m bench bench/bench_pets.py``, a tiny budget). Everything runs on the calling thread (torch 1 thread,
OpenBLAS 1 thread).

* CEM replan on the trained 5-member ensemble, horizon 30, 400 samples, 40 elites, from the hanging state, no
  deadline, the planners timed interleaved (A, B, C, ... repeated): the torch path (``SamplingPlanner`` on
  ``LearnedDynamics(make_predictor(ensemble, "tsinf"))``, 5 particles) and ``robot_rl.control.ensemble_cem.EnsembleCEM``
  (float32 numpy) with TS-inf (5 particles, one per member) and TS-1 (1 particle per sample), 2 and 3 CEM
  iterations. Best and median of N replans [ms]. Target <= 20 ms.
* Return vs env steps: ``robot_rl.algos.pets.train_pets`` with ``evaluate_every_refit`` (what ``robot-rl train``
  runs for ``algo: pets``) on ``config/pets_cartpole_swingup_randomized.yaml`` (randomization ``default`` as the
  SAC config): after every refit the model is *evaluated* the way SAC's runner evaluates: MPC episodes of 500 steps
  (10 s, the SAC episode length) on the SAC eval seeds ``1e9 + i``, not added to the data and not counted. The x
  axis is the env steps of the training data. SAC: ``eval.csv`` of a ``robot-rl train`` run (``--sac-run``,
  5 deterministic episodes of 500 steps every 5000 steps).
  Steps-to-reach: the first evaluation whose mean return >= the level; level = SAC's final eval return, or the largest
  return both reach if PETS stays below it. Target: SAC steps / PETS steps >= 10.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import copy  # noqa: E402
import csv  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from _machine import machine_header  # noqa: E402

from robot_rl.algos.pets import EpisodeLog, EvalLog, PetsConfig, train_pets  # noqa: E402
from robot_rl.algos.pets_model import ProbabilisticEnsemble, make_predictor  # noqa: E402
from robot_rl.control.costs import Cost  # noqa: E402
from robot_rl.control.dynamics import LearnedDynamics  # noqa: E402
from robot_rl.control.ensemble_cem import EnsembleCEM, EnsembleCEMSettings  # noqa: E402
from robot_rl.control.mpc import SamplingPlanner  # noqa: E402
from robot_rl.control.sampling import SamplingSettings  # noqa: E402
from robot_rl.core.assets import find_asset  # noqa: E402
from robot_rl.core.config import load_config  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "pets.md"
PLOT = Path(__file__).resolve().parent / "results" / "pets_vs_sac.png"
CONFIG = "config/pets_cartpole_swingup_randomized.yaml"
EVAL_SEED_START = 1_000_000_000
"""Same evaluation seeds as the SAC runner (``train.eval_seed_start``): same start states and randomization draws."""


# --------------------------------------------------------------------------- CEM replan time

PLANNERS = (  # (name, planner, propagation, particles, iterations)
    ("torch SamplingPlanner", "sampling", "tsinf", 5, 3),
    ("numpy EnsembleCEM", "ensemble_cem", "tsinf", 5, 3),
    ("numpy EnsembleCEM", "ensemble_cem", "ts1", 1, 3),
    ("numpy EnsembleCEM", "ensemble_cem", "ts1", 1, 2),
)


def make_planner(kind: str, model: ProbabilisticEnsemble, cost: Cost, dt: float, lo, hi, *, propagation: str,
                 particles: int, iterations: int, samples: int = 400, elites: int = 40):
    """A CEM planner on ``model``. A ``prev_action`` model (action input ``[u_prev, u]``) gets ``u_prev`` from the
    plan in ``EnsembleCEM``; the torch ``SamplingPlanner`` (its model takes u only) is fed ``u_prev = 0``: the same
    forward cost, for timing only.
    """
    settings = SamplingSettings(method="cem", num_samples=samples, iterations=iterations, num_elites=elites,
                                noise_std=0.5)
    prev = model.nu == 2 * cost.nu
    if kind == "sampling":
        gen = torch.Generator().manual_seed(0)
        predict = make_predictor(model, propagation, gen)
        if prev:
            def padded(X, U, predict=predict):
                return predict(X, np.concatenate([np.zeros_like(np.broadcast_to(U, X.shape[:2] + U.shape[-1:])),
                                                  np.broadcast_to(U, X.shape[:2] + U.shape[-1:])], axis=-1))
        dyn = LearnedDynamics(padded if prev else predict, model.nx, cost.nu, dt, n_particles=particles,
                              u_min=lo, u_max=hi)
        return SamplingPlanner(dyn, cost, settings, rng=np.random.default_rng(0))
    return EnsembleCEM(model.numpy_params(), cost, EnsembleCEMSettings(settings, propagation, particles, prev),
                       dt=dt, u_min=lo, u_max=hi, rng=np.random.default_rng(0))


def cem_replan_ms(model: ProbabilisticEnsemble, dt: float, lo: np.ndarray, hi: np.ndarray, cost: Cost, *,
                  planners=PLANNERS, horizon: int = 30, n: int = 30, n_slow: int = 10) -> list[dict]:
    """Time the ``planners`` interleaved (one replan of each per round, two warm-up rounds) from the hanging state;
    the torch planner (~0.1 s a replan) gets only ``n_slow`` rounds. Returns best / median [ms] per planner.
    """
    built = [make_planner(kind, model, cost, dt, lo, hi, propagation=prop, particles=P, iterations=it)
             for _, kind, prop, P, it in planners]
    x0 = np.array([0.0, np.pi, 0.0, 0.0])
    U0 = np.zeros((horizon, cost.nu))
    times: list[list[float]] = [[] for _ in planners]
    for k in range(n + 2):
        for j, ((_, kind, _, _, it), planner) in enumerate(zip(planners, built)):
            if kind == "sampling" and k >= n_slow + 2:
                continue
            t0 = time.perf_counter()
            sol = planner.optimize(x0, U0, deadline=float("inf"))
            if k >= 2:
                times[j].append(time.perf_counter() - t0)
            if sol.iterations != it:
                raise RuntimeError(f"cem_replan_ms: CEM ran {sol.iterations} iterations, expected {it}")
    out = []
    for (name, _, prop, P, it), ts in zip(planners, times):
        t = np.asarray(ts) * 1e3
        out.append({"planner": name, "propagation": prop, "particles": P, "iterations": it, "samples": 400,
                    "horizon": horizon, "elites": 40, "n": len(t), "best_ms": float(t.min()),
                    "median_ms": float(np.median(t))})
    return out


# --------------------------------------------------------------------------- PETS with evaluation


def pets_curve(cfg: PetsConfig, log=print) -> dict:
    """``train_pets`` with an evaluation after every refit. Returns the curves (module docstring) and, for
    :func:`confirm`, the model of every refit (``snapshots``: state dicts in refit order, the same order as ``eval``).
    """
    train_rows, eval_rows, snapshots = [], [], []

    def on_event(e):
        if isinstance(e, EpisodeLog):
            train_rows.append({"episode": e.episode, "kind": e.kind, "return": e.env_return,
                               "env_steps": e.env_steps})
        elif isinstance(e, EvalLog):
            eval_rows.append({"env_steps": e.env_steps, "return_mean": e.return_mean, "returns": list(e.returns),
                              "wall_s": e.wall_s, "refits": e.refits})

    def on_refit(model):
        snapshots.append(copy.deepcopy(model.state_dict()))

    t0 = time.perf_counter()
    _, model = train_pets(cfg, log=log, callback=on_event, on_refit=on_refit, evaluate_every_refit=True)
    import robot_rl.envs as envs

    env = envs.make(cfg.env_id)
    sim = env.unwrapped
    lo, hi = sim.model.actuator_ctrlrange[:, 0], sim.model.actuator_ctrlrange[:, 1]
    dt = sim.control_dt
    env.close()
    return {"train": train_rows, "eval": eval_rows, "model": model, "dt": dt, "lo": lo, "hi": hi,
            "cost": Cost.from_yaml(find_asset(cfg.cost)), "wall_s": time.perf_counter() - t0,
            "snapshots": snapshots}


def confirm(p: dict, cfg: PetsConfig, level: float, n_total: int, log=print) -> list[int]:
    """Add evaluation episodes (seeds ``1e9 + cfg.eval_episodes .. 1e9 + n_total - 1``, same planner seeding as
    ``train_pets``'s evaluation) to the points that decide the comparison: the first point whose mean reaches
    ``level`` (repeated with the next reaching point while the extended mean falls below) and the last point. Updates
    ``p["eval"]`` rows in place (``returns``, ``return_mean``); returns the indices of the extended rows.
    """
    import robot_rl.envs as envs
    from robot_rl.algos.pets import evaluate

    if n_total <= cfg.eval_episodes:
        return []
    ecfg = dataclasses.replace(cfg, eval_episodes=n_total)
    env = envs.make(cfg.env_id, randomization=cfg.randomization, seed=cfg.eval_seed_start,
                    max_episode_steps=cfg.eval_steps)
    cost = Cost.from_yaml(find_asset(cfg.cost))
    model = copy.deepcopy(p["model"])
    done: list[int] = []

    def extend(i: int) -> None:
        row = p["eval"][i]
        model.load_state_dict(p["snapshots"][i])
        more = evaluate(model, ecfg, env, cost, torch.Generator().manual_seed(cfg.seed + 12345), row["refits"],
                        first=len(row["returns"]))
        row["returns"] = row["returns"] + more
        row["return_mean"] = float(np.mean(row["returns"]))
        done.append(i)
        log(f"confirm: {row['env_steps']} steps: {len(row['returns'])} episodes, mean {row['return_mean']:.1f}")

    try:
        for i, row in enumerate(p["eval"]):
            if row["return_mean"] >= level:
                extend(i)
                if p["eval"][i]["return_mean"] >= level:
                    break
        if len(p["eval"]) - 1 not in done:
            extend(len(p["eval"]) - 1)
    finally:
        env.close()
    return done


# --------------------------------------------------------------------------- SAC curve, comparison


def read_sac(run_dir: Path) -> tuple[list[tuple[int, float]], str]:
    """``[(env_steps, eval return_mean)]`` from ``run_dir/eval.csv`` and the run's status from ``run.json``."""
    path = run_dir / "eval.csv"
    if not path.is_file():
        raise FileNotFoundError(f"read_sac: no eval.csv in SAC run {run_dir}")
    with path.open() as f:
        rows = [(int(r["step"]), float(r["return_mean"])) for r in csv.DictReader(f)]
    if not rows:
        raise ValueError(f"read_sac: {path} has no evaluation rows")
    status = json.loads((run_dir / "run.json").read_text()).get("status", "unknown")
    return rows, status


def steps_to_reach(curve: list[tuple[int, float]], level: float) -> int | None:
    """Env steps of the first point with return >= ``level`` (None if never)."""
    return next((s for s, r in curve if r >= level), None)


def compare(pets: list[tuple[int, float]], sac: list[tuple[int, float]]) -> dict:
    sac_final = sac[-1][1]
    pets_best, sac_best = max(r for _, r in pets), max(r for _, r in sac)
    level = sac_final if pets_best >= sac_final else min(pets_best, sac_best)
    s_p, s_s = steps_to_reach(pets, level), steps_to_reach(sac, level)
    i = [s for s, _ in sac].index(s_s) if s_s is not None else 0
    # SAC is evaluated every few thousand steps: it crossed the level after the previous evaluation
    sac_prev = sac[i - 1][0] if i > 0 else 0
    return {"sac_final": sac_final, "pets_best": pets_best, "level": level, "level_is_sac_final": level == sac_final,
            "pets_steps": s_p, "sac_steps": s_s, "sac_prev": sac_prev,
            "ratio": (s_s / s_p) if s_p and s_s else None,
            "ratio_low": ((sac_prev + 1) / s_p) if s_p and s_s else None}


def plot(pets, sac, level: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(*zip(*pets, strict=True), "o-", label="PETS (CEM-MPC on the ensemble)")
    ax.plot(*zip(*sac, strict=True), "s-", label="SAC (robot-rl train)")
    ax.axhline(level, color="gray", ls="--", lw=1, label=f"level {level:.0f}")
    ax.set_xscale("log")
    ax.set_xlabel("environment steps (training data)")
    ax.set_ylabel("eval return, 500-step episodes (max 500)")
    ax.set_title("Cart-pole swing-up, randomization default")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(cfg: PetsConfig, sac_run: Path, timing_n: int, *, timing_only: bool = False, confirm_episodes: int = 5
        ) -> dict:
    """PETS curve (unless ``timing_only``: then the model is trained without evaluations), the deciding points
    extended to ``confirm_episodes`` evaluation episodes (:func:`confirm`), and CEM timing."""
    if timing_only:
        cfg = dataclasses.replace(cfg, eval_episodes=0)
    sac, status = read_sac(sac_run)
    p = pets_curve(cfg)
    p["confirmed"] = confirm(p, cfg, sac[-1][1], confirm_episodes) if p["eval"] else []
    timing = cem_replan_ms(p["model"], p["dt"], p["lo"], p["hi"], p["cost"], n=timing_n)
    load = os.getloadavg()
    pets = [(row["env_steps"], row["return_mean"]) for row in p["eval"]]
    return {"load": load, "pets": p, "pets_curve": pets, "sac_curve": sac, "sac_status": status,
            "sac_run": str(sac_run), "timing": timing,
            "confirm_episodes": max(confirm_episodes, cfg.eval_episodes), "cmp": compare(pets, sac) if pets else None,
            "cfg": cfg}


def report(r: dict, command: str) -> str:
    cfg, c, p = r["cfg"], r["cmp"], r["pets"]
    la = r["load"]
    lines = [
        "# PETS vs SAC on the cart-pole swing-up",
        "",
        machine_header(),
        "",
        f"Command: `{command}` (pytest: `pytest -m bench bench/bench_pets.py`, tiny budget).",
        f"Machine: {platform.processor() or platform.machine()}, Python {sys.version.split()[0]}, torch "
        f"{torch.__version__}, numpy {np.__version__}; one torch / BLAS thread; the host ({os.cpu_count()} cores) is "
        f"shared with other jobs: load average {la[0]:.2f} / {la[1]:.2f} / {la[2]:.2f} (1 / 5 / 15 min) at the end of "
        f"the run. PETS loop wall time {p['wall_s']:.0f} s (with evaluations).",
        "",
        "## CEM replan on the ensemble (target <= 20 ms)",
        "",
        "One replan = `optimize` from the hanging state on the trained ensemble (5 members, 64x64 silu), 400 samples, "
        "horizon 30, 40 elites, no deadline; the four planners timed interleaved in one run. `torch SamplingPlanner`: "
        "the previous path (`SamplingPlanner` on `LearnedDynamics(make_predictor(...))`, one torch forward per step). "
        "`numpy EnsembleCEM`: `robot_rl.control.ensemble_cem` (float32 numpy forward with the normalization folded "
        "into the weights, preallocated buffers, noise and TS-1 member draws once per replan shared by the CEM "
        "iterations, no extra rollouts of the final mean / returned plan). Rows through the ensemble per step = "
        "samples x particles."
        + (" The ensemble takes the previous command as input (`prev_action`); the torch planner, whose model takes u "
           "only, is fed u_prev = 0 (same forward cost: timing only)." if cfg.prev_action else ""),
        "",
        "| planner | members | propagation | particles | rows/step | samples | horizon | CEM iterations | elites | "
        "best | median | target |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t in r["timing"]:
        ok = "met" if t["median_ms"] <= 20 else ("met (best only)" if t["best_ms"] <= 20 else "**not met**")
        lines.append(f"| {t['planner']} | {cfg.n_members} | {t['propagation'].upper()} | {t['particles']} | "
                     f"{t['samples'] * t['particles']} | {t['samples']} | {t['horizon']} | {t['iterations']} | "
                     f"{t['elites']} | {t['best_ms']:.1f} ms | {t['median_ms']:.1f} ms (n={t['n']}) | {ok} |")
    if c is None:
        lines += ["", "(Timing-only run: no learning curve; `--timing-only`.)", ""]
        return "\n".join(lines)
    ratio = c["ratio"]
    verdict = ("met" if ratio is not None and ratio >= 10 and c["level_is_sac_final"] else
               "met at the largest common level only (PETS never reached SAC's final return)"
               if ratio is not None and ratio >= 10 else "**not met**")
    lines += [
        "",
        "## Return vs environment steps (target: SAC's final return with >= 10x fewer steps)",
        "",
        f"Same env (`{cfg.env_id}`), same randomization (`{cfg.randomization}`), same evaluation seeds and length: "
        f"{cfg.eval_episodes} episode(s) (PETS) / 5 (SAC) of {cfg.eval_steps} steps (10 s at 50 Hz, max return "
        f"{cfg.eval_steps}) on the seeds 1e9 + i. PETS: `{CONFIG}` ({cfg.random_episodes} random + {cfg.episodes} "
        f"MPC training episodes of {cfg.episode_steps} steps, "
        + (f"ensemble {cfg.n_members} x {list(cfg.hidden)} {cfg.activation}, refit up to {cfg.train_epochs} epochs "
           f"with early stopping on {cfg.holdout_fraction:.0%} held-out transitions (patience {cfg.patience})"
           if cfg.train_epochs else f"{cfg.train_steps} gradient steps per refit")
        + f"; planner `{cfg.planner}`, {cfg.propagation.upper()} with {cfg.n_particles} particle(s), "
        f"{cfg.cem.num_samples} samples, {cfg.cem.iterations} CEM iterations, {cfg.cem.num_elites} elites, horizon "
        f"{cfg.mpc.horizon}, executed plan: CEM {cfg.cem_plan}), evaluated with CEM-MPC after every refit "
        + (f"(the same planner with {cfg.eval_cem_iterations} CEM iterations) " if cfg.eval_cem_iterations else "")
        + f"(evaluation episodes are not training data and not counted); the points that decide the comparison (the "
        f"first reaching SAC's final return, and the last) are extended to {r['confirm_episodes']} episodes "
        f"(seeds 1e9 + 0 .. {r['confirm_episodes'] - 1}) and their extended mean is what the table and the "
        f"comparison use. "
        f"SAC: `{r['sac_run']}/eval.csv` (run status `{r['sac_status']}`), evaluated every 5000 steps, so its "
        "steps-to-reach is only known to 5000-step resolution.",
        "",
        "| PETS env steps | PETS eval return (mean) | episodes | per-episode returns | | SAC env steps | "
        "SAC eval return |",
        "|---|---|---|---|---|---|---|",
    ]
    n = max(len(r["pets_curve"]), len(r["sac_curve"]))
    for i in range(n):
        a = r["pets_curve"][i] if i < len(r["pets_curve"]) else ("", None)
        b = r["sac_curve"][i] if i < len(r["sac_curve"]) else ("", None)
        rets = p["eval"][i]["returns"] if i < len(p["eval"]) else []
        lines.append(f"| {a[0]} | {'' if a[1] is None else f'{a[1]:.1f}'} | {len(rets) or ''} | "
                     f"{', '.join(f'{x:.0f}' for x in rets)} | | {b[0]} | {'' if b[1] is None else f'{b[1]:.1f}'} |")
    tr = ", ".join(f"{row['return']:.1f}" for row in p["train"])
    lines += [
        "",
        f"PETS training episode returns ({cfg.episode_steps} steps each, max {cfg.episode_steps}): {tr}.",
        "",
        f"- SAC final eval return: {c['sac_final']:.1f}; PETS best eval return: {c['pets_best']:.1f}.",
        f"- Level compared: {c['level']:.1f} ({'SAC final' if c['level_is_sac_final'] else 'largest common level'}).",
        f"- Steps to reach it: PETS {c['pets_steps']}, SAC {c['sac_steps']}; ratio SAC / PETS = "
        f"{'n/a' if ratio is None else f'{ratio:.1f}'}x: target {verdict}. SAC crossed the level between its "
        f"evaluations at {c['sac_prev']} and {c['sac_steps']} steps, so the ratio lies in "
        f"[{'n/a' if ratio is None else format(c['ratio_low'], '.1f')}, {'n/a' if ratio is None else f'{ratio:.1f}'}].",
        "",
        "Footing: both are scored by the env's reward over the same 500-step episodes from the same seeded start "
        "states and randomization draws. Differences that remain: PETS plans on the simulator's physics state "
        "(`get_state()`, no observation noise; as `train_pets` does), SAC acts on the noisy observation; "
        + ("the PETS model takes the previous command as input (`prev_action`), which lets it represent the "
           "randomization's 0-1 step action latency; " if cfg.prev_action else
           "the randomization includes a 0-1 step action latency that the PETS model's input (`[qpos, qvel]`, u; "
           "no previous action) cannot represent; ")
        + f"PETS is evaluated with a stochastic planner ({cfg.eval_episodes} episodes, {r['confirm_episodes']} at the "
        "deciding points), SAC deterministically (5).",
        "",
        "Plot: `bench/results/pets_vs_sac.png`.",
        "",
    ]
    return "\n".join(lines)


@pytest.mark.bench
def test_bench_pets(tmp_path):
    """Tiny budget: the machinery runs, the timing is sane, curves are increasing in env steps."""
    cfg = load_config(PetsConfig, CONFIG, overrides=["episodes=1", "train_steps=30", "eval_steps=20",
                                                     "eval_episodes=1", "progress=false", "mpc.horizon=20",
                                                     "cem.num_samples=100", "cem.num_elites=10"])
    p = pets_curve(cfg, log=lambda *_: None)
    assert [row["env_steps"] for row in p["eval"]] == [cfg.episode_steps, 2 * cfg.episode_steps]
    assert all(np.isfinite(row["return_mean"]) and 0 <= row["return_mean"] <= 20 for row in p["eval"])
    first = [list(row["returns"]) for row in p["eval"]]
    assert confirm(p, cfg, level=-1.0, n_total=2, log=lambda *_: None) == [0, 1]  # first reaching point, last
    assert [row["returns"][:1] for row in p["eval"]] == first and all(len(row["returns"]) == 2 for row in p["eval"])
    assert all(row["return_mean"] == np.mean(row["returns"]) for row in p["eval"])
    t = cem_replan_ms(p["model"], p["dt"], p["lo"], p["hi"], p["cost"], n=3, n_slow=2)
    assert len(t) == len(PLANNERS) and all(0 < r["best_ms"] <= r["median_ms"] < 2000.0 for r in t)
    sac_dir = tmp_path / "sac"
    sac_dir.mkdir()
    (sac_dir / "eval.csv").write_text("step,return_mean\n5000,50.0\n10000,120.0\n")
    (sac_dir / "run.json").write_text('{"status": "complete"}')
    sac, status = read_sac(sac_dir)
    c = compare([(150, 10.0), (300, 130.0)], sac)
    assert status == "complete" and c["level"] == 120.0 and c["pets_steps"] == 300 and c["sac_steps"] == 10000
    assert c["sac_prev"] == 5000 and c["ratio_low"] == 5001 / 300 and c["ratio"] == 10000 / 300
    c2 = compare([(150, 10.0), (300, 60.0)], sac)  # PETS below SAC's final: largest common level
    assert c2["level"] == 60.0 and c2["sac_steps"] == 10000 and not c2["level_is_sac_final"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=CONFIG)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="PetsConfig override")
    ap.add_argument("--sac-run", default="runs/cartpole_swingup_sac_ship", help="SAC run dir with eval.csv")
    ap.add_argument("--timing-n", type=int, default=30)
    ap.add_argument("--timing-only", action="store_true", help="train without evaluations; CEM timing only")
    ap.add_argument("--confirm-episodes", type=int, default=5,
                    help="evaluation episodes at the deciding points (first reaching SAC's final return, last)")
    args = ap.parse_args(argv)
    cfg = load_config(PetsConfig, args.config, overrides=["progress=false", *args.set])
    res = run(cfg, Path(args.sac_run), args.timing_n, timing_only=args.timing_only,
              confirm_episodes=args.confirm_episodes)
    text = report(res, ".venv/bin/python bench/bench_pets.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    if res["cmp"] is not None:
        plot(res["pets_curve"], res["sac_curve"], res["cmp"]["level"], PLOT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
