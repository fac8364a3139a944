"""robot_rl SAC / PPO side by side with Stable-Baselines3 2.9.2 on the same robot_rl envs.

    python bench/bench_sb3.py [--quick]        # writes bench/results/sb3.md and bench/results/sb3_curves.png
    python bench/bench_sb3.py --sac-speed      # prints the SAC time-per-step table only
    pytest -m bench bench/bench_sb3.py         # the --quick variant, checks the speed target

Both libraries get the same env object type (``robot_rl.envs.make``, ``default`` randomization on), net sizes,
batch size, update-to-data ratio (1 gradient step per env step), learning-starts, learning rates and budget; torch
runs 1 thread for both. Measured:

1. SAC time per env step *with updates* (after learning starts), robot_rl vs SB3, at the shipped configs' hidden
   size (64x64) and at SB3's default (256x256) (``--sac-speed``: this section alone). Both process CPU time
   (robust on a shared machine) and best-of wall time are reported; runs are interleaved so both see the same
   machine load.
2. SAC final deterministic return on held-out randomization seeds after a fixed budget, pendulum and cart-pole
   swing-up, 3 seeds.
3. PPO wall-clock (training time, evaluation excluded) until the cart-pole balance evaluation return >= 400.

Needs ``pip install -r requirements-bench.txt`` (stable-baselines3); nothing in the package imports it.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from _machine import machine_header

RESULTS = Path(__file__).resolve().parent / "results"
EVAL_SEEDS = [1_000_000_000 + i for i in range(5)]
PPO_THRESHOLD = 400.0


def _our_sac(env_id: str, hidden: int, seed: int, learning_starts: int, batch: int):
    from robot_rl.algos.sac import SacLearner
    from robot_rl.train.config import load_experiment

    cfg = load_experiment(raw={"algo": "sac", "seed": seed, "env": {"id": env_id, "randomization": "default"},
                               "sac": {"learning_starts": learning_starts, "batch_size": batch,
                                       "actor_hidden": [hidden, hidden], "critic_hidden": [hidden, hidden]}})
    learner = SacLearner(cfg)
    learner.begin_segment(0)
    return learner


def _sb3_sac(env_id: str, hidden: int, seed: int, learning_starts: int, batch: int):
    from stable_baselines3 import SAC

    import robot_rl.envs as E

    env = E.make(env_id, randomization="default", seed=seed)
    return SAC("MlpPolicy", env, learning_starts=learning_starts, batch_size=batch, seed=seed, verbose=0,
               device="cpu", buffer_size=1_000_000, train_freq=1, gradient_steps=1,
               policy_kwargs={"net_arch": [hidden, hidden]})


def _eval(policy, env_id: str) -> float:
    from robot_rl.scale.envs import make_env
    from robot_rl.train.evaluate import evaluate_episodes

    env = make_env(env_id, randomization="default", seed=EVAL_SEEDS[0])
    rows = evaluate_episodes(policy, env, EVAL_SEEDS)
    return float(np.mean([r["return"] for r in rows]))


def _sb3_policy(model, vecnorm=None):
    def act(obs: torch.Tensor) -> torch.Tensor:
        o = obs.numpy()
        if vecnorm is not None:
            o = vecnorm.normalize_obs(o)
        a, _ = model.predict(o, deterministic=True)
        return torch.as_tensor(a, dtype=torch.float32)

    return act


def sac_speed(env_id: str, hidden: int, seeds: list[int], steps: int) -> dict:
    """Per env step (with one update each) after learning starts: CPU ms and best wall ms, both libraries."""
    kinds = ["ours", "sb3"]
    out = {f"{k}_{m}": [] for k in kinds for m in ("cpu", "wall")}
    for seed in seeds:
        learners = {}
        for k in kinds:
            if k == "sb3":
                learners[k] = _sb3_sac(env_id, hidden, seed, 256, 256)
                learners[k].learn(300)
            else:
                learners[k] = _our_sac(env_id, hidden, seed, 256, 256)
                learners[k].train_until(300)
        for _ in range(2):  # interleave: all see the same load
            for k, learner in learners.items():
                c, w = time.process_time(), time.perf_counter()
                if k == "sb3":
                    learner.learn(steps, reset_num_timesteps=False)
                else:
                    learner.train_until(learner.env_steps + steps)
                out[f"{k}_cpu"].append((time.process_time() - c) / steps)
                out[f"{k}_wall"].append((time.perf_counter() - w) / steps)
    res = {k: float(np.median(v)) if "cpu" in k else float(np.min(v)) for k, v in out.items()}
    res["load_avg"] = os.getloadavg()[0]
    return res


def sac_final_return(env_id: str, seeds: list[int], budget: int, hidden: int = 64, batch: int = 128,
                     learning_starts: int = 1000) -> dict:
    """Deterministic held-out return after ``budget`` steps and wall time, per library and seed."""
    res = {"ours": [], "sb3": [], "ours_s": [], "sb3_s": [], "curves_ours": [], "curves_sb3": []}
    chunk = budget // 4
    for seed in seeds:
        torch.manual_seed(seed)
        ours = _our_sac(env_id, hidden, seed, learning_starts, batch)
        sb3 = _sb3_sac(env_id, hidden, seed, learning_starts, batch)
        co, cs, to, ts = [], [], 0.0, 0.0
        for k in range(1, 5):
            t = time.perf_counter()
            ours.train_until(k * chunk)
            to += time.perf_counter() - t
            co.append((k * chunk, _eval(ours.policy_module(), env_id)))
            t = time.perf_counter()
            sb3.learn(chunk, reset_num_timesteps=False)
            ts += time.perf_counter() - t
            cs.append((k * chunk, _eval(_sb3_policy(sb3), env_id)))
        res["ours"].append(co[-1][1])
        res["sb3"].append(cs[-1][1])
        res["ours_s"].append(to)
        res["sb3_s"].append(ts)
        res["curves_ours"].append(co)
        res["curves_sb3"].append(cs)
    return res


def ppo_time_to_threshold(seeds: list[int], max_steps: int, eval_every: int = 8192) -> dict:
    """Training wall-clock [s] until the balance eval return >= PPO_THRESHOLD (inf if not within max_steps)."""
    from robot_rl.algos.ppo import PpoLearner
    from robot_rl.train.config import load_experiment

    env_id = "robot_rl/CartpoleBalance-v0"
    cfg_path = Path(__file__).resolve().parents[1] / "config" / "ppo_cartpole_balance.yaml"
    res = {"ours": [], "sb3": [], "ours_steps": [], "sb3_steps": []}
    for seed in seeds:
        cfg = load_experiment(cfg_path, [f"seed={seed}", f"train.total_steps={max_steps}"])
        c = cfg.ppo
        learner = PpoLearner(cfg)
        learner.begin_segment(0)
        spent, hit, hit_steps = 0.0, float("inf"), None
        while learner.env_steps < max_steps:
            t = time.perf_counter()
            learner.train_until(learner.env_steps + eval_every)
            spent += time.perf_counter() - t
            if _eval(learner.policy_module(), env_id) >= PPO_THRESHOLD:
                hit, hit_steps = spent, learner.env_steps
                break
        res["ours"].append(hit)
        res["ours_steps"].append(hit_steps)

        hit, hit_steps = _sb3_ppo_time(env_id, seed, c, max_steps, eval_every)
        res["sb3"].append(hit)
        res["sb3_steps"].append(hit_steps)
    return res


def ppo_time_per_step(seeds: list[int], steps: int = 16384, rounds: int = 2) -> dict:
    """PPO training time per env step [s] (rollout + update, no evaluation), robot_rl and SB3 interleaved.

    Same config as ``ppo_time_to_threshold``; each of ``rounds`` x ``seeds`` trains a fresh learner of each library
    for ``steps`` env steps (16 iterations of 1024 steps by default). Returns per-run wall and process-CPU seconds
    per env step (``ours_wall``, ``ours_cpu``, ``sb3_wall``, ``sb3_cpu``: lists) and the load average before/after.
    """
    from robot_rl.algos.ppo import PpoLearner
    from robot_rl.train.config import load_experiment

    env_id = "robot_rl/CartpoleBalance-v0"
    cfg_path = Path(__file__).resolve().parents[1] / "config" / "ppo_cartpole_balance.yaml"
    res = {"ours_wall": [], "ours_cpu": [], "sb3_wall": [], "sb3_cpu": [], "load": [os.getloadavg()[0]],
           "steps": steps}
    for _ in range(rounds):
        for seed in seeds:
            cfg = load_experiment(cfg_path, [f"seed={seed}", f"train.total_steps={steps}"])
            learner = PpoLearner(cfg)
            learner.begin_segment(0)
            w, t = time.perf_counter(), time.process_time()
            learner.train_until(steps)
            res["ours_wall"].append((time.perf_counter() - w) / steps)
            res["ours_cpu"].append((time.process_time() - t) / steps)
            learner.close()
            model = _sb3_ppo_model(env_id, seed, cfg.ppo)
            w, t = time.perf_counter(), time.process_time()
            model.learn(steps)
            res["sb3_wall"].append((time.perf_counter() - w) / steps)
            res["sb3_cpu"].append((time.process_time() - t) / steps)
    res["load"].append(os.getloadavg()[0])
    return res


def _sb3_ppo_model(env_id: str, seed: int, c):
    """SB3 PPO with the robot_rl config's sizes (VecNormalize for the observation normalization)."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    import robot_rl.envs as E

    venv = VecNormalize(DummyVecEnv([lambda i=i: E.make(env_id, randomization="default", seed=seed * 100 + i)
                                     for i in range(c.num_envs)]), norm_obs=True, norm_reward=False)
    lr = c.learning_rate
    return PPO("MlpPolicy", venv, n_steps=c.n_steps, batch_size=c.num_envs * c.n_steps // c.n_minibatches,
               n_epochs=c.n_epochs, learning_rate=lambda f: lr * f, gamma=c.gamma, gae_lambda=c.gae_lambda,
               clip_range=c.clip_coef, target_kl=c.target_kl, ent_coef=c.entropy_coef, vf_coef=c.value_coef,
               max_grad_norm=c.max_grad_norm, seed=seed, device="cpu", verbose=0,
               policy_kwargs={"net_arch": {"pi": list(c.actor_hidden), "vf": list(c.critic_hidden)},
                              "log_std_init": c.init_log_std})


def _sb3_ppo_time(env_id: str, seed: int, c, max_steps: int, eval_every: int) -> tuple[float, int | None]:
    from stable_baselines3.common.callbacks import BaseCallback

    model = _sb3_ppo_model(env_id, seed, c)
    venv = model.get_env()

    class Stop(BaseCallback):
        def __init__(self):
            super().__init__()
            self.spent, self.hit, self.hit_steps, self.last, self.t = 0.0, float("inf"), None, 0, None

        def _on_training_start(self):
            self.t = time.perf_counter()

        def _on_step(self):
            if self.num_timesteps - self.last < eval_every:
                return True
            self.last = self.num_timesteps
            self.spent += time.perf_counter() - self.t
            venv.training = False
            ret = _eval(_sb3_policy(self.model, venv), env_id)
            venv.training = True
            self.t = time.perf_counter()
            if ret >= PPO_THRESHOLD:
                self.hit, self.hit_steps = self.spent, self.num_timesteps
                return False
            return True

    cb = Stop()
    model.learn(max_steps, callback=cb)
    return cb.hit, cb.hit_steps


def _fmt(xs) -> str:
    xs = np.asarray(xs, dtype=float)
    if xs.size == 0:
        return "not run"
    return f"{xs.mean():.1f} +- {xs.std():.1f}" if np.isfinite(xs).all() else ", ".join(f"{x:.1f}" for x in xs)


def run(quick: bool) -> dict:
    torch.set_num_threads(1)
    seeds = [0] if quick else [0, 1, 2]
    steps = 200 if quick else 500
    results = {"speed": {}, "final": {}, "quick": quick, "load": [os.getloadavg()], "started": time.time()}
    for hidden in (64, 256):
        results["speed"][hidden] = sac_speed("robot_rl/PendulumSwingup-v0", hidden, seeds, steps)
        results["load"].append(os.getloadavg())
    write_report(results)  # partial reports after each section: a long bench interrupted still leaves numbers
    results["ppo_step"] = ppo_time_per_step(seeds, 8192 if quick else 16384, rounds=1 if quick else 2)
    results["ppo"] = ppo_time_to_threshold(seeds, 40960 if quick else 81920)
    results["load"].append(os.getloadavg())
    write_report(results)
    budgets = {"robot_rl/PendulumSwingup-v0": 4000 if quick else 8000,
               "robot_rl/CartpoleSwingup-v0": 8000 if quick else 20000}
    for env_id, budget in budgets.items():
        results["final"][env_id] = (budget, sac_final_return(env_id, seeds, budget))
        results["load"].append(os.getloadavg())
        write_report(results)
    return results


def sac_speed_table(speed: dict) -> list[str]:
    """Markdown rows of ``{hidden: sac_speed(...)}``."""
    lines = ["| hidden | robot_rl CPU ms | SB3 CPU ms | ratio (CPU) | robot_rl wall ms | SB3 wall ms | ratio (wall) "
             "| load |", "|---|---|---|---|---|---|---|---|"]
    for hidden, s in speed.items():
        oc, sc, ow, sw = s["ours_cpu"], s["sb3_cpu"], s["ours_wall"], s["sb3_wall"]
        lines.append(f"| {hidden}x{hidden} | {oc * 1e3:.2f} | {sc * 1e3:.2f} | {oc / sc:.2f} | {ow * 1e3:.2f} | "
                     f"{sw * 1e3:.2f} | {ow / sw:.2f} | {s['load_avg']:.1f} |")
    return lines


def write_report(results: dict) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    RESULTS.mkdir(parents=True, exist_ok=True)
    loads = results.get("load", [])
    load_txt = ", ".join(f"{la[0]:.1f}" for la in loads) if loads else "not recorded"
    elapsed = (time.time() - results["started"]) / 60 if "started" in results else float("nan")
    lines = ["# robot_rl vs Stable-Baselines3 2.9.2 (SAC, PPO)", "",
             machine_header(), "",
             f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared with other "
             f"jobs while measured), torch {torch.__version__}, 1 torch thread for both. "
             f"Generated by `python bench/bench_sb3.py{' --quick' if results['quick'] else ''}`"
             f"{' (REDUCED budget: 1 seed, shorter runs)' if results['quick'] else ' (3 seeds, full budget)'}; "
             f"1-minute load average at the start and after each section: {load_txt}; "
             f"{elapsed:.0f} min of wall time so far.", "",
             "## SAC time per env step (one gradient update per step, batch 256, robot_rl/PendulumSwingup-v0)", "",
             "Process CPU ms per env step (median of the interleaved windows) and best wall ms. robot_rl: autograd "
             "update, `torch.optim.Adam(fused=True)`.", ""] + sac_speed_table(results["speed"])
    lines += ["", "## SAC final deterministic return on held-out randomization seeds (5 episodes each)", "",
              "Same hidden 64x64, batch 128, learning starts 1000, UTD 1 for both.", "",
              "| env | budget (steps) | robot_rl return | SB3 return | robot_rl train s | SB3 train s |",
              "|---|---|---|---|---|---|"]
    if not results["final"]:
        lines.append("| (not run yet) | | | | | |")
    fig, axes = plt.subplots(1, max(1, len(results["final"])), figsize=(6 * max(1, len(results["final"])), 4))
    for ax, (env_id, (budget, r)) in zip(np.atleast_1d(axes), results["final"].items()):
        lines.append(f"| {env_id} | {budget} | {_fmt(r['ours'])} | {_fmt(r['sb3'])} | {_fmt(r['ours_s'])} | "
                     f"{_fmt(r['sb3_s'])} |")
        for name, key in (("robot_rl", "curves_ours"), ("SB3", "curves_sb3")):
            curves = np.array(r[key])  # [seeds, points, 2]
            ax.plot(curves[0, :, 0], curves[:, :, 1].mean(0), "o-", label=name)
        ax.set_title(f"SAC {env_id}")
        ax.set_xlabel("env steps")
        ax.set_ylabel("eval return (held-out seeds)")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(RESULTS / "sb3_curves.png", dpi=90)
    plt.close(fig)
    p = results.get("ppo", {"ours": [], "sb3": [], "ours_steps": "not run", "sb3_steps": "not run"})
    lines += ["", f"## PPO wall-clock to cart-pole balance eval return >= {PPO_THRESHOLD:.0f}", "",
              "config/ppo_cartpole_balance.yaml for both (8 envs x 128 steps, 10 epochs, 4 minibatches, initial "
              "lr 1e-3, KL early stop 0.05, 64x64 tanh, initial log-std -0.5, obs normalization: SB3 via "
              "VecNormalize). robot_rl uses its adaptive-KL learning rate (desired KL 0.01); SB3 has none and "
              "gets a linear decay from the same initial lr. Training time only (evaluation every 8192 steps "
              "excluded); inf = not reached within the budget.", "",
              "| | robot_rl | SB3 |", "|---|---|---|",
              f"| seconds | {_fmt(p['ours'])} | {_fmt(p['sb3'])} |",
              f"| env steps | {p['ours_steps']} | {p['sb3_steps']} |", ""]
    q = results.get("ppo_step")
    if q:
        med = {k: float(np.median(q[k])) * 1e3 for k in ("ours_wall", "ours_cpu", "sb3_wall", "sb3_cpu")}
        lines += [f"PPO training time per env step (rollout + update, no evaluation; {q['steps']} env steps per run, "
                  "robot_rl and SB3 interleaved per seed; median over runs; load average "
                  f"{q['load'][0]:.1f} -> {q['load'][-1]:.1f}):", "",
                  "| | robot_rl | SB3 | ratio |", "|---|---|---|---|",
                  f"| wall ms per env step | {med['ours_wall']:.3f} | {med['sb3_wall']:.3f} | "
                  f"{med['ours_wall'] / med['sb3_wall']:.2f} |",
                  f"| CPU ms per env step | {med['ours_cpu']:.3f} | {med['sb3_cpu']:.3f} | "
                  f"{med['ours_cpu'] / med['sb3_cpu']:.2f} |", ""]
    lines += ["![curves](sb3_curves.png)", ""]
    out = RESULTS / "sb3.md"
    out.write_text("\n".join(lines))
    return out


@pytest.mark.bench
def test_sac_faster_than_sb3():
    torch.set_num_threads(1)
    s = sac_speed("robot_rl/PendulumSwingup-v0", 64, [0], 200)
    assert s["ours_cpu"] <= 0.5 * s["sb3_cpu"], s


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 seed and shorter budgets (minutes)")
    ap.add_argument("--sac-speed", action="store_true",
                    help="only the SAC time-per-step section (3 seeds, 64x64 and 256x256): print its table, "
                         "write nothing")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # SB3 may write logs in the working directory
        if args.sac_speed:
            torch.set_num_threads(1)
            print(f"1-minute load average at the start: {os.getloadavg()[0]:.1f}")
            speed = {h: sac_speed("robot_rl/PendulumSwingup-v0", h, [0, 1, 2], 500) for h in (64, 256)}
            print("\n".join(sac_speed_table(speed)))
        else:
            print(write_report(run(args.quick)))
    sys.exit(0)
