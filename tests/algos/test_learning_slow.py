"""Learning within a fixed step budget (marker ``slow``; each well under 3 min of CPU on 2 cores).

* SAC, pendulum swing-up (config/sac_pendulum_swingup.yaml, randomization on): mean deterministic return on 5
  held-out randomization seeds >= -200 at one of the evaluations (every 2500 steps) within 15k env steps.
  Meaning: Pendulum-v1 scale, a random policy scores about -1200 and a policy that cannot swing up about -800 or
  less; >= -200 requires swinging up from any start and holding the pendulum upright for most of the 10 s episode.
* PPO, cart-pole balance (config/ppo_cartpole_balance.yaml, randomization on, episodes end when the pole passes
  0.8 rad): mean deterministic return on 5 held-out seeds >= 400 of max 500 within 32768 env steps, i.e. the pole
  stays up for (almost) the whole 10 s episode.
* PETS, cart-pole swing-up with the SAC config's randomization (config/pets_cartpole_swingup_randomized.yaml, the
  bench/bench_pets.py recipe cut to 1 random + 3 MPC episodes of 250 steps = 1000 env steps): one CEM-MPC evaluation
  episode of 500 steps on the first SAC evaluation seed returns >= 300 of max 500 (SAC reaches ~300 after 20k env
  steps, bench/results/pets.md). Meaning: the pole is swung up within ~2 s and then held up, nearly centered, with
  small commands; a planner on a model that cannot predict the swing-up scores < 100, one that swings up but does not
  hold the pole ~150-250.
"""

from pathlib import Path

import pytest

from robot_rl.train.config import load_experiment
from robot_rl.train.runner import train

CONFIG = Path(__file__).resolve().parents[2] / "config"


@pytest.mark.slow
def test_sac_swings_up_pendulum(tmp_path):
    cfg = load_experiment(CONFIG / "sac_pendulum_swingup.yaml", [
        "train.total_steps=15000", "train.eval_every_steps=2500", "train.eval_episodes=5", "train.progress=false"])
    info = train(cfg, tmp_path / "run")
    best = info["best_eval_return"]
    assert best >= -200.0, f"SAC pendulum best eval return {best:.1f} < -200 within 15k steps"


@pytest.mark.slow
def test_ppo_balances_cartpole(tmp_path):
    cfg = load_experiment(CONFIG / "ppo_cartpole_balance.yaml", [
        "train.total_steps=32768", "train.eval_every_steps=8192", "train.eval_episodes=5", "train.progress=false"])
    info = train(cfg, tmp_path / "run")
    best = info["best_eval_return"]
    assert best >= 400.0, f"PPO cart-pole balance best eval return {best:.1f} < 400 within 32768 steps"


@pytest.mark.slow
def test_pets_swings_up_randomized_cartpole_in_1000_steps():
    import torch

    import robot_rl.envs as envs
    from robot_rl.algos.pets import PetsConfig, evaluate, train_pets
    from robot_rl.control.costs import Cost
    from robot_rl.core.assets import find_asset
    from robot_rl.core.config import load_config

    n = torch.get_num_threads()
    cfg = load_config(PetsConfig, CONFIG / "pets_cartpole_swingup_randomized.yaml",
                      overrides=["episodes=3", "eval_episodes=1", "progress=false"])
    assert cfg.randomization == "default" and cfg.episode_steps == 250 and cfg.eval_steps == 500
    env = envs.make(cfg.env_id, randomization=cfg.randomization, seed=cfg.eval_seed_start,
                    max_episode_steps=cfg.eval_steps)
    try:
        logs, model = train_pets(cfg, log=lambda e: None)  # the returned model is refit on all 1000 transitions
        assert logs[-1].env_steps == 1000
        ret = evaluate(model, cfg, env, Cost.from_yaml(find_asset(cfg.cost)), torch.Generator(), refits=4)[0]
    finally:
        env.close()
        torch.set_num_threads(n)
    assert ret >= 300.0, f"PETS randomized cart-pole eval return {ret:.1f} < 300 after 1000 env steps"
