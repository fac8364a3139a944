"""Every shipped config loads strictly and its learner runs a few steps on its env (randomization on)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from robot_rl.envs import is_batched
from robot_rl.train.config import load_experiment
from robot_rl.train.runner import make_learner

EXTERNAL_BENCH = {"sac_dmc_cartpole_swingup", "sac_dmc_walker_walk", "sac_hopper", "ppo_halfcheetah"}
CONFIGS = sorted((Path(__file__).resolve().parents[2] / "config").glob("[sp][ap][co]_*.yaml"))


def test_all_expected_configs_exist():
    names = {p.stem for p in CONFIGS}
    for algo in ("sac", "ppo"):
        for task in ("pendulum_swingup", "cartpole_swingup", "arm_reach"):
            assert f"{algo}_{task}" in names
    assert "sac_dmc_cheetah_run" in names and "ppo_cartpole_balance" in names


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_trains_a_few_steps(path):
    small = {"sac": ["sac.learning_starts=8", "sac.batch_size=8", "sac.buffer_size=100"],
             "ppo": ["ppo.num_envs=2", "ppo.n_steps=8", "ppo.n_minibatches=2", "ppo.n_epochs=1"]}
    cfg = load_experiment(path)
    # randomization on: the "default" profile (the shipped swing-up: "wide_latency", default with more latency), or a
    # legged task's "train" (robot_rl.envs.legged_task); the external benchmark's configs (bench/bench_external.py)
    # train the suite's task as it is, like the peer library
    expected = None if path.stem in EXTERNAL_BENCH else "train" if is_batched(cfg.env.id) else "default"
    expected = "wide_latency" if path.stem == "sac_cartpole_swingup" else expected
    assert cfg.env.randomization == expected
    cfg = load_experiment(path, small[cfg.algo])
    learner = make_learner(cfg)
    try:
        learner.begin_segment(0)
        learner.train_until(16)
        stats = learner.pop_stats()
        assert stats and all(isinstance(v, float) for v in stats.values())
        policy = learner.policy_module()
        act = policy(torch.zeros(3, learner.n_obs))
        assert act.shape == (3, learner.n_act) and np.isfinite(act.detach().numpy()).all()
    finally:
        learner.close()
