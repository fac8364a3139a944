"""Learning (slow): offline goal-conditioned RL on the Franka Panda at the task's own 2 cm success radius.

The small version of bench/bench_panda_offline.py (full size in bench/results/panda_offline.md): 150 episodes of
PandaReach-v0 from the noisy reach expert (``config/collect_panda_reach_noisy.yaml``: Gaussian action noise std 0.3,
10 % random actions), GCBC and GC-IQL from their Panda configs (hindsight relabeling, success distance 0.02 m) with
128 x 128 networks for STEPS gradient steps each; success = the hand within 0.02 m of a held-out goal (env seeds
>= 1e9, never in the data) at the end of the 2 s episode, without randomization.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from robot_rl.commands.collect import CollectConfig, collect
from robot_rl.core.config import load_config
from robot_rl.scale.envs import make_env
from robot_rl.train.config import load_experiment
from robot_rl.train.evaluate import evaluate_episodes

CONFIG = Path(__file__).resolve().parents[2] / "config"
EPISODES, STEPS, GOALS = 150, 3000, 20


@pytest.mark.slow
def test_gcbc_and_gciql_reach_held_out_panda_goals_within_2_cm(tmp_path):
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    c = load_config(CollectConfig, CONFIG / "collect_panda_reach_noisy.yaml")
    collect(c.env, c.controller, EPISODES, str(tmp_path / "d"), noise=c.noise, random_prob=c.random_prob,
            seed=c.seed, progress=False)
    env = make_env("robot_rl/PandaReach-v0", seed=10**9)
    assert env.unwrapped.distance_threshold == 0.02
    rates = {}
    for algo in ("gcbc", "gciql"):
        cfg = load_experiment(CONFIG / f"{algo}_panda_reach.yaml",
                              [f"dataset.path={tmp_path / 'd'}", f"{algo}.hidden=[128,128]"])
        learner = cfg.make_learner()
        learner.begin_segment(0)
        learner.train_until(STEPS)
        rows = evaluate_episodes(learner.policy_module().eval(), env, [10**9 + i for i in range(GOALS)])
        rates[algo] = float(np.mean([r["success"] for r in rows]))
    env.close()
    print(f"held-out Panda goals reached within 0.02 m after {STEPS} gradient steps: {rates}")
    assert rates["gcbc"] >= 0.8 and rates["gciql"] >= 0.7, rates
