"""Offline goal-conditioned RL on the Franka Panda at the task's own 2 cm success radius: GCBC and GC-IQL.

Run as a script (``python bench/bench_panda_offline.py``, writes bench/results/panda_offline.md) or through pytest
(``pytest -m bench bench/bench_panda_offline.py``: a smaller run, no results file).

Data: ``config/collect_panda_reach_noisy.yaml`` (the resolved-rate reach expert in delta joint targets + Gaussian
action noise std 0.3 + 10 % random actions; 1000 episodes x 100 steps = 100k transitions, randomization off). Both
learners train from ``config/gcbc_panda_reach.yaml`` / ``config/gciql_panda_reach.yaml`` (hindsight relabeling,
success distance 0.02 m) for the same number of gradient steps, one torch thread. Evaluation: the deterministic
policy on 100 held-out goals (env seeds >= 1e9, never in the data) of ``PandaReach-v0`` without randomization and
under held-out ``reality`` samples; success = the hand within 0.02 m at the last step, held = within 0.02 m for the
whole last 0.5 s; the scripted expert without noise is the reference row.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from _machine import machine_header  # noqa: E402

from robot_rl.commands.collect import CollectConfig, ReachExpert, collect  # noqa: E402
from robot_rl.core.config import load_config  # noqa: E402
from robot_rl.scale.envs import make_env  # noqa: E402
from robot_rl.train.config import load_experiment  # noqa: E402
from robot_rl.train.evaluate import evaluate_episodes  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results" / "panda_offline.md"
ENV_ID = "robot_rl/PandaReach-v0"
CONFIGS = {"gcbc": ROOT / "config" / "gcbc_panda_reach.yaml", "gciql": ROOT / "config" / "gciql_panda_reach.yaml"}
EVAL_SEED = 10**9 + 5_000_000  # away from the seeds train-time evaluation uses
HOLD_STEPS = 25  # 0.5 s at the 0.02 s control period


def evaluate(policy, goals: int, randomization: str | None) -> dict:
    """Success at the last step, held the last 0.5 s, and final distance p50 [m] on ``goals`` held-out goals."""
    env = make_env(ENV_ID, randomization=randomization, seed=EVAL_SEED)
    try:
        rows = evaluate_episodes(policy, env, [EVAL_SEED + i for i in range(goals)])
    finally:
        env.close()
    dt = env.unwrapped.control_dt
    return {"success": float(np.mean([r["success"] for r in rows])),
            "held": float(np.mean([r["success_held_s"] >= HOLD_STEPS * dt - 1e-9 for r in rows])),
            "distance_p50": float(np.median([r["goal_distance"] for r in rows]))}


def expert_policy():
    """The noise-free scripted expert as a ``(1, n_obs) tensor -> (1, n_act)`` policy on flat observations."""
    from robot_rl.envs import make

    env = make(ENV_ID)
    expert = ReachExpert(env)
    n_obs = len(env.unwrapped.obs_names)

    def act(obs):
        o = obs[0].numpy().astype(np.float64)
        a = expert({"observation": o[:n_obs], "desired_goal": o[n_obs:]}, None)
        return torch.as_tensor(a, dtype=torch.float32)[None]

    return act


def train(algo: str, data: str, steps: int) -> tuple[object, float]:
    """Train ``algo`` from its Panda config on ``data`` for ``steps`` gradient steps; ``(policy, seconds)``."""
    torch.set_num_threads(1)
    cfg = load_experiment(CONFIGS[algo], [f"dataset.path={data}", f"train.total_steps={steps}"])
    learner = cfg.make_learner()
    learner.begin_segment(0)
    t0 = time.perf_counter()
    learner.train_until(steps)
    return learner.policy_module().eval(), time.perf_counter() - t0


def run(episodes: int, steps: int, goals: int, data_dir: Path) -> dict:
    c = load_config(CollectConfig, ROOT / "config" / "collect_panda_reach_noisy.yaml")
    t0 = time.perf_counter()
    ds = collect(c.env, c.controller, episodes, str(data_dir), noise=c.noise, random_prob=c.random_prob,
                 seed=c.seed, progress=False)
    out = {"episodes": episodes, "transitions": ds.n_steps, "collect_s": time.perf_counter() - t0, "steps": steps,
           "goals": goals, "noise": c.noise, "random_prob": c.random_prob,
           "data_success": float(np.mean([bool(e.infos["is_success"][-1]) for e in ds.episodes])), "rows": {}}
    policies = {"scripted expert (no noise; reference)": (expert_policy(), float("nan"))}
    for algo in CONFIGS:
        policies[algo] = train(algo, str(data_dir), steps)
    for name, (policy, seconds) in policies.items():
        out["rows"][name] = {"train_s": seconds, "none": evaluate(policy, goals, None),
                             "reality": evaluate(policy, goals, "reality")}
        print(name, out["rows"][name], file=sys.stderr)
    return out


def write_results(r: dict) -> str:
    rows = []
    for name, row in r["rows"].items():
        n, re = row["none"], row["reality"]
        train_s = "-" if np.isnan(row["train_s"]) else f"{row['train_s']:.0f} s"
        rows.append(f"| {name} | {train_s} | {n['success']:.2f} | {n['held']:.2f} | {1000 * n['distance_p50']:.1f} | "
                    f"{re['success']:.2f} | {re['held']:.2f} | {1000 * re['distance_p50']:.1f} |")
    table = "\n".join(rows)
    text = f"""# Offline goal-conditioned RL on the Panda at 2 cm

{machine_header()}

`python bench/bench_panda_offline.py` on {platform.machine()} / Python {platform.python_version()} / torch
{torch.__version__}, one torch thread (1-min load average at the end of the run: {os.getloadavg()[0]:.1f}).

Data (`config/collect_panda_reach_noisy.yaml`): {r['episodes']} episodes, {r['transitions']} transitions of
PandaReach-v0 without randomization, the resolved-rate reach expert in delta joint targets with Gaussian action
noise (std {r['noise']}) and {100 * r['random_prob']:.0f} % uniformly random actions; {r['data_success']:.2f} of the
episodes end within 2 cm of their own goal; collected in {r['collect_s']:.0f} s. GCBC and GC-IQL train from
`config/gcbc_panda_reach.yaml` / `config/gciql_panda_reach.yaml` with {r['steps']} gradient steps each.
Evaluation: the deterministic policy on {r['goals']} held-out goals (env seeds from {EVAL_SEED}), success = the
hand within the task's own 0.02 m at the last step; held = within 0.02 m for the whole last 0.5 s; distance = final
distance p50 [mm]. "reality" = held-out reality samples (sim/randomization/reality.yaml: masses, damping, gains,
0-2 steps of latency, sensor noise and bias, pushes), which neither the data nor training ever saw.

| policy | training | success | held 0.5 s | distance [mm] | reality: success | held | distance [mm] |
|---|---|---|---|---|---|---|---|
{table}
"""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    return text


@pytest.mark.bench
def test_panda_offline_gc_rl(tmp_path):
    r = run(episodes=100, steps=1000, goals=20, data_dir=tmp_path / "data")
    assert r["rows"]["gcbc"]["none"]["success"] > 0.5, r


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--episodes", type=int, default=1000)
    p.add_argument("--steps", type=int, default=20000, help="gradient steps per learner")
    p.add_argument("--goals", type=int, default=100)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(write_results(run(a.episodes, a.steps, a.goals, Path(tmp) / "data")))
