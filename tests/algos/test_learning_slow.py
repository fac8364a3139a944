"""Learning within a fixed step budget (marker ``slow``; each well under 3 min of CPU on 2 cores).

* SAC, pendulum swing-up (config/sac_pendulum_swingup.yaml, randomization on): mean deterministic return on 5
  held-out randomization seeds >= -200 at one of the evaluations (every 2500 steps) within 15k env steps.
  Meaning: Pendulum-v1 scale, a random policy scores about -1200 and a policy that cannot swing up about -800 or
  less; >= -200 requires swinging up from any start and holding the pendulum upright for most of the 10 s episode.
* SAC's opt-in ``torch.compile`` of the hand-derived gradient pass (``ROBOT_RL_SAC_COMPILE=1``) gives the eager
  gradients (compiling takes 20-50 s on a cold Inductor cache, hence slow).
* PPO, cart-pole balance (config/ppo_cartpole_balance.yaml, randomization on, episodes end when the pole passes
  0.8 rad): mean deterministic return on 5 held-out seeds >= 400 of max 500 within 32768 env steps, i.e. the pole
  stays up for (almost) the whole 10 s episode.
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
def test_sac_compiled_gradients_match_eager(monkeypatch):
    import torch

    from robot_rl.algos.sac import SacLearner

    monkeypatch.setenv("ROBOT_RL_SAC_COMPILE", "1")
    cfg = load_experiment(raw={"algo": "sac", "seed": 0, "env": {"id": "robot_rl/PendulumSwingup-v0"},
                               "sac": {"learning_starts": 50, "batch_size": 32, "actor_hidden": [16, 12],
                                       "critic_hidden": [16, 8]}})
    learner = SacLearner(cfg)
    learner.begin_segment(0)
    learner.train_until(80)  # the first update compiles
    assert learner._grads_fn.compiled, "torch.compile fell back to eager on this machine"
    for _ in range(2):
        batch = learner.replay.sample()
        noise = torch.randn(2 * batch.obs.shape[0], learner.n_act)
        learner.compute_grads(batch, noise, fused=False)
        ref = learner.flat_grad.clone()
        learner.flat_grad.fill_(5.0)
        learner.compute_grads(batch, noise)
        torch.testing.assert_close(learner.flat_grad, ref, atol=1e-5, rtol=1e-4)
