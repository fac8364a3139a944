"""PETS on the cart-pole swing-up: CEM replan time on the ensemble, and return vs env steps next to this project's SAC.

Run as a script (``python bench/bench_pets.py``, writes bench/results/pets.md and pets_vs_sac.png) or through pytest
(``pytest -m bench bench/bench_pets.py``, a tiny budget). Everything runs on the calling thread (torch 1 thread).

* CEM replan: ``robot_rl.control.mpc.SamplingPlanner.optimize`` (what ``MPCController.replan`` calls in PETS) on
  ``LearnedDynamics(make_predictor(ensemble, "tsinf"))`` exactly as ``train_pets`` builds it: 5 members, 5 particles
  (one per member, TS-inf), 400 samples, horizon 30, 40 elites, from the hanging state; timed with 3 CEM iterations
  (the shipped PETS config) and 5 (the PETS paper). Best and median of N replans [ms]. Target <= 20 ms.
* Return vs env steps: the PETS loop of ``robot_rl.algos.pets.train_pets`` (same pieces: ``fit``, ``make_predictor``,
  ``run_episode``, same seeds and RNG streams, shipped config ``config/pets_cartpole_swingup.yaml``), with two
  differences needed for a fair comparison: (1) the env uses the SAC run's domain randomization (``default``;
  ``PetsConfig`` has no randomization field), (2) after every refit the current model is *evaluated* the way SAC's
  runner evaluates: MPC episodes of 500 steps (10 s, the SAC episode length) on the SAC eval seeds ``1e9 + i``, with
  their own RNG streams, not added to the data and not counted as env steps. The x axis is the env steps of the
  training data (random + MPC episodes of 150 steps). SAC: ``eval.csv`` of a ``robot-rl train`` run (``--sac-run``,
  5 deterministic episodes of 500 steps every 5000 steps).
  Steps-to-reach: the first evaluation whose mean return >= the level; level = SAC's final eval return, or the largest
  return both reach if PETS stays below it. Target: SAC steps / PETS steps >= 10.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
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

from robot_rl.algos.pets import PetsConfig, ProbabilisticEnsemble, fit, make_predictor, run_episode  # noqa: E402
from robot_rl.control.costs import Cost  # noqa: E402
from robot_rl.control.dynamics import LearnedDynamics  # noqa: E402
from robot_rl.control.mpc import MPCController, SamplingPlanner  # noqa: E402
from robot_rl.control.sampling import SamplingSettings  # noqa: E402
from robot_rl.core.assets import find_asset  # noqa: E402
from robot_rl.core.config import load_config  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "pets.md"
PLOT = Path(__file__).resolve().parent / "results" / "pets_vs_sac.png"
CONFIG = "config/pets_cartpole_swingup.yaml"
EVAL_SEED_START = 1_000_000_000
"""Same evaluation seeds as the SAC runner (``train.eval_seed_start``): same start states and randomization draws."""


# --------------------------------------------------------------------------- CEM replan time


def cem_replan_ms(model: ProbabilisticEnsemble, dt: float, lo: np.ndarray, hi: np.ndarray, cost: Cost, *,
                  iterations: int, samples: int = 400, horizon: int = 30, elites: int = 40, particles: int = 5,
                  n: int = 30) -> dict:
    """Time ``n`` CEM replans from the hanging state on ``model`` (TS-inf particles). Returns best / median [ms]."""
    gen = torch.Generator().manual_seed(0)
    dyn = LearnedDynamics(make_predictor(model, "tsinf", gen), model.nx, model.nu, dt, n_particles=particles,
                          u_min=lo, u_max=hi)
    settings = SamplingSettings(method="cem", num_samples=samples, iterations=iterations, num_elites=elites,
                                noise_std=0.5)
    planner = SamplingPlanner(dyn, cost, settings, rng=np.random.default_rng(0))
    x0 = np.array([0.0, np.pi, 0.0, 0.0])
    U0 = np.zeros((horizon, model.nu))
    times = []
    for k in range(n + 2):
        t0 = time.perf_counter()
        sol = planner.optimize(x0, U0, deadline=float("inf"))
        if k >= 2:  # two warm-up calls
            times.append(time.perf_counter() - t0)
        if sol.iterations != iterations:
            raise RuntimeError(f"cem_replan_ms: CEM ran {sol.iterations} iterations, expected {iterations}")
    t = np.asarray(times) * 1e3
    return {"iterations": iterations, "samples": samples, "horizon": horizon, "elites": elites,
            "particles": particles, "n": n, "best_ms": float(t.min()), "median_ms": float(np.median(t))}


# --------------------------------------------------------------------------- PETS with evaluation


def _mpc(model, cfg: PetsConfig, sim, cost, gen, seed: int) -> MPCController:
    """The controller ``train_pets`` builds for one episode."""
    nx, nu = sim.model.nq + sim.model.nv, sim.model.nu
    lo, hi = sim.model.actuator_ctrlrange[:, 0], sim.model.actuator_ctrlrange[:, 1]
    dyn = LearnedDynamics(make_predictor(model, cfg.propagation, gen), nx, nu, sim.control_dt,
                          n_particles=cfg.n_particles, u_min=lo, u_max=hi)
    planner = SamplingPlanner(dyn, cost, cfg.cem, rng=np.random.default_rng(seed))
    return MPCController(planner, dataclasses.replace(cfg.mpc, control_period_s=sim.control_dt))


def _policy(mpc: MPCController):
    def policy(x, t):
        mpc.replan(x, t)
        return mpc.action(x, t)

    return policy


def pets_curve(cfg: PetsConfig, randomization: str | None, eval_steps: int, eval_episodes: int, log=print) -> dict:
    """PETS loop (as ``train_pets``) with an evaluation after every refit. Returns the curves (module docstring)."""
    import robot_rl.envs as envs

    torch.set_num_threads(cfg.torch_threads)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    eval_gen = torch.Generator().manual_seed(cfg.seed + 12345)  # separate stream: training matches train_pets
    rng = np.random.default_rng(cfg.seed)
    env = envs.make(cfg.env_id, randomization=randomization, seed=cfg.seed, max_episode_steps=cfg.episode_steps)
    eval_env = envs.make(cfg.env_id, randomization=randomization, seed=EVAL_SEED_START,
                         max_episode_steps=eval_steps)
    sim = env.unwrapped
    nx, nu = sim.model.nq + sim.model.nv, sim.model.nu
    cost = Cost.from_yaml(find_asset(cfg.cost))
    model = ProbabilisticEnsemble(nx, nu, cfg.angle_indices, cfg.n_members, cfg.hidden, cfg.activation)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    data: dict[str, list] = {"x": [], "u": [], "x_next": []}
    lo, hi = sim.model.actuator_ctrlrange[:, 0], sim.model.actuator_ctrlrange[:, 1]
    angle = cfg.angle_indices[0] if cfg.angle_indices else 0
    train_rows, eval_rows = [], []
    t_start = time.perf_counter()
    for ep in range(cfg.random_episodes):
        seed = cfg.seed * 1000 + ep
        ret, _, _ = run_episode(env, lambda x, t: rng.uniform(lo, hi), cfg.episode_steps, seed, None, angle, data)
        train_rows.append({"episode": ep, "kind": "random", "return": ret, "env_steps": len(data["x"])})
        log(train_rows[-1])
    for r in range(cfg.episodes + 1):
        loss = fit(model, {k: np.asarray(v) for k, v in data.items()}, cfg, opt, gen)
        rets = []
        for i in range(eval_episodes):
            mpc = _mpc(model, cfg, eval_env.unwrapped, cost, eval_gen, EVAL_SEED_START + 7919 * (r + 1) + i)
            ret, _, _ = run_episode(eval_env, _policy(mpc), eval_steps, EVAL_SEED_START + i, None, angle,
                                    {"x": [], "u": [], "x_next": []})
            rets.append(ret)
        eval_rows.append({"env_steps": len(data["x"]), "return_mean": float(np.mean(rets)),
                          "returns": [float(v) for v in rets], "loss": loss,
                          "wall_s": time.perf_counter() - t_start})
        log(eval_rows[-1])
        if r == cfg.episodes:
            break
        ep = cfg.random_episodes + r
        seed = cfg.seed * 1000 + ep
        ret, _, _ = run_episode(env, _policy(_mpc(model, cfg, sim, cost, gen, seed)), cfg.episode_steps, seed, model,
                                angle, data)
        train_rows.append({"episode": ep, "kind": "mpc", "return": ret, "env_steps": len(data["x"])})
        log(train_rows[-1])
    return {"train": train_rows, "eval": eval_rows, "model": model, "dt": sim.control_dt, "lo": lo, "hi": hi,
            "cost": cost, "wall_s": time.perf_counter() - t_start}


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


def run(cfg: PetsConfig, sac_run: Path, randomization: str | None, eval_steps: int, eval_episodes: int,
        timing_n: int) -> dict:
    p = pets_curve(cfg, randomization, eval_steps, eval_episodes)
    timing = [cem_replan_ms(p["model"], p["dt"], p["lo"], p["hi"], p["cost"], iterations=it, n=timing_n)
              for it in (3, 5)]
    sac, status = read_sac(sac_run)
    pets = [(row["env_steps"], row["return_mean"]) for row in p["eval"]]
    return {"load": os.getloadavg()[0], "pets": p, "pets_curve": pets, "sac_curve": sac, "sac_status": status,
            "sac_run": str(sac_run), "timing": timing, "cmp": compare(pets, sac), "cfg": cfg,
            "randomization": randomization, "eval_steps": eval_steps, "eval_episodes": eval_episodes}


def report(r: dict, command: str) -> str:
    cfg, c, p = r["cfg"], r["cmp"], r["pets"]
    lines = [
        "# PETS vs SAC on the cart-pole swing-up",
        "",
        f"Command: `{command}` (pytest: `pytest -m bench bench/bench_pets.py`, tiny budget).",
        f"Machine: {platform.processor() or platform.machine()}, Python {sys.version.split()[0]}, torch "
        f"{torch.__version__}; one torch thread; the host ({os.cpu_count()} cores) is shared with other jobs: load "
        f"average {r['load']:.1f} at the end of the run. PETS loop wall time {p['wall_s']:.0f} s (with evaluations).",
        "",
        "## CEM replan on the ensemble (target <= 20 ms)",
        "",
        "`SamplingPlanner.optimize` (what `MPCController.replan` runs in PETS) on `LearnedDynamics(make_predictor(...,"
        " 'tsinf'))` with the trained 5-member ensemble, from the hanging state, no deadline.",
        "",
        "| members | particles | samples | horizon | CEM iterations | elites | best | median | target |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for t in r["timing"]:
        ok = "met" if t["median_ms"] <= 20 else ("met (best only)" if t["best_ms"] <= 20 else "**not met**")
        lines.append(f"| {cfg.n_members} | {t['particles']} | {t['samples']} | {t['horizon']} | {t['iterations']} | "
                     f"{t['elites']} | {t['best_ms']:.1f} ms | {t['median_ms']:.1f} ms (n={t['n']}) | {ok} |")
    ratio = c["ratio"]
    verdict = ("met" if ratio is not None and ratio >= 10 and c["level_is_sac_final"] else
               "met at the largest common level only (PETS never reached SAC's final return)"
               if ratio is not None and ratio >= 10 else "**not met**")
    lines += [
        "",
        "## Return vs environment steps (target: SAC's final return with >= 10x fewer steps)",
        "",
        f"Same env (`{cfg.env_id}`), same randomization (`{r['randomization']}`), same evaluation: "
        f"{r['eval_episodes']} episode(s) (PETS) / 5 (SAC) of {r['eval_steps']} steps (10 s at 50 Hz, max return "
        f"{r['eval_steps']}) on the seeds 1e9 + i. PETS: `{CONFIG}` ({cfg.random_episodes} random + {cfg.episodes} "
        f"MPC training episodes of {cfg.episode_steps} steps, {cfg.train_steps} gradient steps per refit), "
        f"evaluated with CEM-MPC after every refit (evaluation episodes are not training data and not counted). "
        f"SAC: `{r['sac_run']}/eval.csv` (run status `{r['sac_status']}`), evaluated every 5000 steps, so its "
        "steps-to-reach is only known to 5000-step resolution.",
        "",
        "| PETS env steps | PETS eval return | | SAC env steps | SAC eval return |",
        "|---|---|---|---|---|",
    ]
    n = max(len(r["pets_curve"]), len(r["sac_curve"]))
    for i in range(n):
        a = r["pets_curve"][i] if i < len(r["pets_curve"]) else ("", None)
        b = r["sac_curve"][i] if i < len(r["sac_curve"]) else ("", None)
        lines.append(f"| {a[0]} | {'' if a[1] is None else f'{a[1]:.1f}'} | | {b[0]} | "
                     f"{'' if b[1] is None else f'{b[1]:.1f}'} |")
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
        "(`get_state()`, no observation noise; as `train_pets` does), SAC acts on the noisy observation; the "
        "randomization includes a 0-1 step action latency that the PETS model's state (`[qpos, qvel]`, no previous "
        f"action) cannot represent; PETS is evaluated with a stochastic planner ({r['eval_episodes']} episodes), SAC "
        "deterministically (5).",
        "",
        "Plot: `bench/results/pets_vs_sac.png`.",
        "",
    ]
    return "\n".join(lines)


@pytest.mark.bench
def test_bench_pets(tmp_path):
    """Tiny budget: the machinery runs, the timing is sane, curves are increasing in env steps."""
    cfg = dataclasses.replace(load_config(PetsConfig, CONFIG), episodes=1, train_steps=30)
    p = pets_curve(cfg, "default", eval_steps=20, eval_episodes=1, log=lambda *_: None)
    assert [row["env_steps"] for row in p["eval"]] == [cfg.episode_steps, 2 * cfg.episode_steps]
    assert all(np.isfinite(row["return_mean"]) and 0 <= row["return_mean"] <= 20 for row in p["eval"])
    t = cem_replan_ms(p["model"], p["dt"], p["lo"], p["hi"], p["cost"], iterations=3, n=3)
    assert 0 < t["best_ms"] <= t["median_ms"] < 1000.0  # regression guard far above the measured ~tens of ms
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
    ap.add_argument("--episodes", type=int, default=None, help="MPC training episodes (default: the config's)")
    ap.add_argument("--sac-run", default="runs/cartpole_swingup_sac_ship", help="SAC run dir with eval.csv")
    ap.add_argument("--randomization", default="default", help="env randomization (the SAC config's)")
    ap.add_argument("--eval-steps", type=int, default=500)
    ap.add_argument("--eval-episodes", type=int, default=1)
    ap.add_argument("--timing-n", type=int, default=30)
    args = ap.parse_args(argv)
    cfg = load_config(PetsConfig, args.config)
    if args.episodes is not None:
        cfg = dataclasses.replace(cfg, episodes=args.episodes)
    res = run(cfg, Path(args.sac_run), None if args.randomization == "none" else args.randomization,
              args.eval_steps, args.eval_episodes, args.timing_n)
    text = report(res, ".venv/bin/python bench/bench_pets.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    plot(res["pets_curve"], res["sac_curve"], res["cmp"]["level"], PLOT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
