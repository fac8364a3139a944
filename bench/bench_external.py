"""robot_rl SAC / PPO vs Stable-Baselines3 2.9.2 on tasks robot_rl did not write, evaluated in the suites' own envs.

    python bench/bench_external.py --tasks dmc-cartpole-swingup --seeds 0 1 2   # trains, caches, reports
    python bench/bench_external.py --report                                      # report from the cached runs
    pytest -m bench bench/bench_external.py                                      # one short run per library

Each (task, library, seed) run trains on the task with the hyperparameters of the task's robot_rl config (net sizes,
learning rates, batch, learning starts, initial temperature, gamma, tau, replay size, 1 torch thread), given to both
libraries, and is evaluated every ``budget / 6`` env steps on 5 deterministic episodes of the *suite's own*
environment: dm_control's ``suite.load`` with fixed task seeds (observations flattened in the suite's key order,
actions mapped from [-1, 1] to the action spec), Gymnasium's ``gymnasium.make`` for its MuJoCo tasks. robot_rl trains
through its own adapter (``robot_rl/dmc-...``, ``robot_rl.scale.envs.make_env``); SB3 trains on the bench's
wrapper of the same suite env, so an adapter fault would show as a gap. Wall time is training only (evaluation
excluded). Each run is cached as JSON in bench/results/external/ (runs of several invocations, e.g. two processes
on two cores, go into one report); the report is bench/results/external.md with external_curves.png.

Needs ``pip install -r requirements-bench.txt`` (stable-baselines3); nothing in the package imports it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from _machine import cache_run, machine_header
from _machine import load_runs as _load_runs

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
CACHE = RESULTS / "external"
EVAL_TASK_SEEDS = [10_000 + i for i in range(5)]
N_POINTS = 6


@dataclass(frozen=True)
class Task:
    env_id: str  # what robot_rl trains on
    config: str  # robot_rl config (hyperparameters for both libraries)
    budget: int  # env steps
    suite: tuple[str, str] | None = None  # dm_control (domain, task); None: a Gymnasium id (env_id)
    algo: str = "sac"

    def command(self, seed: int) -> str:
        sets = f"--set env.randomization=null --set train.total_steps={self.budget} --set seed={seed}"
        return f"robot-rl train --config {self.config} {sets}"


TASKS = {
    "dmc-cartpole-swingup": Task("robot_rl/dmc-cartpole-swingup-v0", "config/sac_dmc_cartpole_swingup.yaml", 30_000,
                                 ("cartpole", "swingup")),
    "dmc-cheetah-run": Task("robot_rl/dmc-cheetah-run-v0", "config/sac_dmc_cheetah_run.yaml", 100_000,
                            ("cheetah", "run")),
    "dmc-walker-walk": Task("robot_rl/dmc-walker-walk-v0", "config/sac_dmc_walker_walk.yaml", 100_000,
                            ("walker", "walk")),
    "Hopper-v5": Task("Hopper-v5", "config/sac_hopper.yaml", 100_000),
    "ppo-HalfCheetah-v5": Task("HalfCheetah-v5", "config/ppo_halfcheetah.yaml", 1_000_000, algo="ppo"),
}


class SuiteEnv(gym.Env):
    """A dm_control suite task as a Gymnasium env, written here independently of robot_rl's adapter."""

    def __init__(self, domain: str, task: str, task_seed: int):
        from dm_control import suite

        self._env = suite.load(domain, task, task_kwargs={"random": task_seed})
        spec = self._env.action_spec()
        self._lo, self._hi = spec.minimum.astype(np.float64), spec.maximum.astype(np.float64)
        n_obs = sum(int(np.prod(s.shape)) for s in self._env.observation_spec().values())
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (n_obs,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, spec.shape, np.float32)

    def _flat(self, ts) -> np.ndarray:
        return np.concatenate([np.asarray(v, np.float32).ravel() for v in ts.observation.values()])

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self._flat(self._env.reset()), {}

    def step(self, action):
        a = np.clip(np.asarray(action, np.float64), -1.0, 1.0)
        ts = self._env.step(self._lo + (a + 1.0) * 0.5 * (self._hi - self._lo))
        terminated = ts.last() and ts.discount == 0.0
        return self._flat(ts), float(ts.reward or 0.0), terminated, ts.last() and not terminated, {}


def suite_env(task: Task, task_seed: int) -> gym.Env:
    """The suite's own env: dm_control's ``suite.load`` (wrapped above) or ``gymnasium.make``."""
    if task.suite is not None:
        return SuiteEnv(*task.suite, task_seed)
    return gym.make(task.env_id)


def evaluate(act, task: Task) -> float:
    """Mean return of 5 deterministic episodes in the suite's own env (fixed task seeds)."""
    returns = []
    gym_env = None if task.suite else suite_env(task, 0)  # one Gymnasium env, reset with each seed
    for s in EVAL_TASK_SEEDS:
        env = gym_env or suite_env(task, s)
        obs, _ = env.reset(seed=s)
        total, done = 0.0, False
        while not done:
            obs, rew, terminated, truncated, _ = env.step(act(np.asarray(obs, np.float32)))
            total += rew
            done = terminated or truncated
        returns.append(total)
    return float(np.mean(returns))


def _config(task: Task, seed: int):
    from robot_rl.train.config import load_experiment

    return load_experiment(ROOT / task.config, [f"env.id={task.env_id}", "env.randomization=null", f"seed={seed}",
                                                f"train.total_steps={task.budget}"])


def train_ours(task: Task, seed: int, budget: int) -> dict:
    from robot_rl.train.runner import make_learner

    learner = make_learner(_config(task, seed))
    learner.begin_segment(0)
    policy = learner.policy_module()

    def act(obs):
        with torch.no_grad():
            return policy(torch.from_numpy(obs).unsqueeze(0))[0].numpy()

    curve, wall = [], 0.0
    for k in range(1, N_POINTS + 1):
        t = time.perf_counter()
        learner.train_until(k * budget // N_POINTS)
        wall += time.perf_counter() - t
        curve.append((learner.env_steps, evaluate(act, task)))
    learner.close()
    return {"curve": curve, "wall_s": wall}


def _sb3_ppo(task: Task, seed: int):
    """SB3 PPO with the robot_rl config's settings; observation normalization through VecNormalize (as robot_rl's
    ``normalize_obs``), rewards not normalized (neither are robot_rl's)."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    c = _config(task, seed).ppo
    if c.lr_schedule == "adaptive" or c.clip_value_loss:
        raise ValueError(f"{task.config}: SB3 has no adaptive learning rate or value clipping like robot_rl's")
    venv = DummyVecEnv([lambda i=i: suite_env(task, seed * 100 + i) for i in range(c.num_envs)])
    venv = VecNormalize(venv, norm_obs=c.normalize_obs, norm_reward=False, gamma=c.gamma)
    lr = c.learning_rate
    act = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU, "elu": torch.nn.ELU}[c.activation]
    return PPO("MlpPolicy", venv, n_steps=c.n_steps, batch_size=c.num_envs * c.n_steps // c.n_minibatches,
               n_epochs=c.n_epochs, learning_rate=(lambda f: lr * f) if c.lr_schedule == "linear" else lr,
               gamma=c.gamma, gae_lambda=c.gae_lambda, clip_range=c.clip_coef, target_kl=c.target_kl,
               ent_coef=c.entropy_coef, vf_coef=c.value_coef, max_grad_norm=c.max_grad_norm,
               normalize_advantage=c.normalize_advantages, seed=seed, device="cpu", verbose=0,
               policy_kwargs={"net_arch": {"pi": list(c.actor_hidden), "vf": list(c.critic_hidden)},
                              "log_std_init": c.init_log_std, "activation_fn": act})


def train_sb3(task: Task, seed: int, budget: int) -> dict:
    if task.algo == "ppo":
        model = _sb3_ppo(task, seed)
        venv = model.get_env()

        def act(obs):
            return model.predict(venv.normalize_obs(obs), deterministic=True)[0]

        return _learn_sb3(model, act, task, budget)
    from stable_baselines3 import SAC

    c = _config(task, seed).sac
    if tuple(c.actor_hidden) != tuple(c.critic_hidden) or c.actor_lr != c.critic_lr or c.utd_ratio != 1.0:
        raise ValueError(f"{task.config}: SB3 takes one net_arch, one learning rate and 1 update per step")
    env = suite_env(task, seed)
    model = SAC("MlpPolicy", env, learning_rate=c.actor_lr, buffer_size=c.buffer_size, batch_size=c.batch_size,
                learning_starts=c.learning_starts, tau=c.tau, gamma=c.gamma, train_freq=1, gradient_steps=1,
                ent_coef=f"auto_{c.init_alpha}" if c.autotune_alpha else c.init_alpha, seed=seed, device="cpu",
                policy_kwargs={"net_arch": list(c.actor_hidden)}, verbose=0)

    def act(obs):
        return model.predict(obs, deterministic=True)[0]

    return _learn_sb3(model, act, task, budget)


def _learn_sb3(model, act, task: Task, budget: int) -> dict:
    curve, wall = [], 0.0
    for _ in range(N_POINTS):
        t = time.perf_counter()
        model.learn(budget // N_POINTS, reset_num_timesteps=False)
        wall += time.perf_counter() - t
        curve.append((int(model.num_timesteps), evaluate(act, task)))
    return {"curve": curve, "wall_s": wall}


def run_one(name: str, lib: str, seed: int, budget: int | None = None, cache: Path | None = CACHE) -> dict:
    """Train and evaluate one (task, library, seed); cache the result as JSON (``cache=None``: don't)."""
    task = TASKS[name]
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as tmp:
        cwd = os.getcwd()
        os.chdir(tmp)  # SB3 may write logs in the working directory
        try:
            res = (train_ours if lib == "robot_rl" else train_sb3)(task, seed, budget or task.budget)
        finally:
            os.chdir(cwd)
    res.update(task=name, lib=lib, seed=seed, budget=budget or task.budget, final=res["curve"][-1][1])
    return cache_run(res, cache, f"{name}-{lib}-seed{seed}")


def load_runs(cache: Path = CACHE) -> list[dict]:
    return _load_runs(cache)


def _mean_std(xs) -> str:
    return f"{np.mean(xs):.0f} +- {np.std(xs):.0f}" if xs else "not run"


def write_report(runs: list[dict]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in TASKS if any(r["task"] == n for r in runs)]
    lines = ["# SAC and PPO on external tasks: robot_rl vs Stable-Baselines3 2.9.2", "", machine_header(), "",
             "Generated by `python bench/bench_external.py` (see its docstring). Same hyperparameters for both "
             "libraries (the task's robot_rl config; no domain randomization), 1 torch thread each; returns are the "
             "mean of 5 deterministic episodes in the suite's own env (dm_control `suite.load` with task seeds "
             f"{EVAL_TASK_SEEDS[0]}-{EVAL_TASK_SEEDS[-1]}, or `gymnasium.make`). Wall time: training only, one "
             "process per core (runs of two processes side by side on this machine).", "",
             "| task | budget | robot_rl return per seed | robot_rl mean +- std | SB3 return per seed "
             "| SB3 mean +- std | robot_rl >= SB3 mean - std | wall ratio robot_rl / SB3 | robot_rl command |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name in names:
        ours = sorted((r for r in runs if r["task"] == name and r["lib"] == "robot_rl"), key=lambda r: r["seed"])
        sb3 = sorted((r for r in runs if r["task"] == name and r["lib"] == "sb3"), key=lambda r: r["seed"])
        fo, fs = [r["final"] for r in ours], [r["final"] for r in sb3]
        ok = "yes" if fo and fs and np.mean(fo) >= np.mean(fs) - np.std(fs) else ("no" if fo and fs else "-")
        ratio = (f"{np.mean([r['wall_s'] for r in ours]) / np.mean([r['wall_s'] for r in sb3]):.2f}"
                 if ours and sb3 else "-")
        seeds = sorted({r["seed"] for r in ours})
        lines.append(f"| {name} | {TASKS[name].budget // 1000}k | "
                     f"{' / '.join(f'{x:.0f}' for x in fo) or '-'} | {_mean_std(fo)} | "
                     f"{' / '.join(f'{x:.0f}' for x in fs) or '-'} | {_mean_std(fs)} | {ok} | {ratio} | "
                     f"`{TASKS[name].command(seeds[0] if seeds else 0)}` |")
    fig, axes = plt.subplots(1, max(1, len(names)), figsize=(5.5 * max(1, len(names)), 4), squeeze=False)
    for ax, name in zip(axes[0], names):
        for lib, color in (("robot_rl", "C0"), ("sb3", "C1")):
            for i, r in enumerate(r for r in runs if r["task"] == name and r["lib"] == lib):
                c = np.asarray(r["curve"])
                ax.plot(c[:, 0], c[:, 1], "o-", color=color, alpha=0.6, lw=1, label=lib if i == 0 else None)
        ax.set_title(f"{TASKS[name].algo.upper()} {name}")
        ax.set_xlabel("env steps")
        ax.set_ylabel("eval return (suite env, 5 episodes)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "external_curves.png", dpi=90)
    plt.close(fig)
    commits = sorted({r.get("commit", "not recorded") for r in runs})
    finished = sorted(r["finished"] for r in runs)
    lines += ["", f"Runs finished {finished[0]} to {finished[-1]}, at commits {', '.join(commits)}. One curve per "
              "seed.", "", "![curves](external_curves.png)", ""]
    out = RESULTS / "external.md"
    out.write_text("\n".join(lines))
    return out


@pytest.mark.bench
def test_sac_level_with_sb3_on_dmc_cartpole_swingup(tmp_path):
    """The issue's bar on its first row, 3 seeds each (~15 min on 2 cores): robot_rl's mean final return >= SB3's
    mean - std. Observation normalization on (SAC's default until 2026-12-07) fails it: 327 mean over 9 seeds."""
    ours = [run_one("dmc-cartpole-swingup", "robot_rl", s, cache=tmp_path)["final"] for s in (0, 1, 2)]
    sb3 = [run_one("dmc-cartpole-swingup", "sb3", s, cache=tmp_path)["final"] for s in (0, 1, 2)]
    assert np.mean(ours) >= np.mean(sb3) - np.std(sb3), (ours, sb3)


@pytest.mark.bench
def test_short_runs_of_both_libraries(tmp_path):
    for lib in ("robot_rl", "sb3"):
        res = run_one("dmc-cartpole-swingup", lib, 0, budget=3000, cache=tmp_path)
        assert len(res["curve"]) == N_POINTS and np.isfinite(res["final"]), res
    assert len(load_runs(tmp_path)) == 2


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=["dmc-cartpole-swingup"], choices=sorted(TASKS))
    ap.add_argument("--libs", nargs="+", default=["robot_rl", "sb3"], choices=["robot_rl", "sb3"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--report", action="store_true", help="only write the report from the cached runs")
    args = ap.parse_args()
    if not args.report:
        for name in args.tasks:
            for seed in args.seeds:
                for lib in args.libs:
                    r = run_one(name, lib, seed)
                    print(f"{name} {lib} seed {seed}: return {r['final']:.1f}, {r['wall_s']:.0f} s", flush=True)
    print(write_report(load_runs()))
    sys.exit(0)
