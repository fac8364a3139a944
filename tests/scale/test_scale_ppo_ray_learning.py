"""PPO fed by 2 Ray rollout workers balances the cart-pole within the local PPO learning test's step budget.

Same task, threshold, budget and evaluation as tests/algos/test_learning_slow.py::test_ppo_balances_cartpole
(``robot_rl/CartpoleBalance-v0``, randomization on; deterministic evaluation on 5 held-out seeds every 8192 steps;
best mean return >= 400 of max 500 within 65536 env steps). Driven by ``robot_rl.scale.ppo_rollout.ppo_train_until``:
the real ``PpoLearner`` (networks, ``_update``), its rollouts collected by Ray actors instead of its own vector env.

PPO settings: config/ppo_cartpole_balance.yaml's outcome depends on the rollout stream (with Ray workers we saw a best
return of 480 with one worker seeding and 391 with another), so this test uses settings that reached >= 400 by 20480
steps in every calibration run: the local runner with seeds 0 and 1 (371 / 476 at 16384, 495 / 434 at 20480) and
the in-process workers with seeds 0 and 1 (see docs/scale.md). On an AMD EPYC 2-vCPU machine (2026-12-05; different
float results from torch, same seeds) learning rate 0.001 peaked at 396 (392 at 16384) and fell back; 0.0005 reached
439 at 16384 there, and evaluating every 8192 steps (same budget) catches an early peak. The default config reached
476 at 16384 there.
"""

from pathlib import Path

import numpy as np
import pytest

from robot_rl.algos.ppo import PpoLearner
from robot_rl.scale.envs import make_env
from robot_rl.scale.ppo_rollout import ppo_train_until
from robot_rl.scale.source import RayRolloutSource
from robot_rl.train.config import load_experiment
from robot_rl.train.evaluate import evaluate_episodes
from robot_rl.train.runner import configure_torch

CONFIG = Path(__file__).resolve().parents[2] / "config" / "ppo_cartpole_balance.yaml"
ROBUST = ["ppo.n_steps=64", "ppo.gamma=0.95", "ppo.learning_rate=0.0005", "ppo.lr_schedule=linear",
          "ppo.clip_value_loss=false", "ppo.max_grad_norm=5.0", "ppo.init_log_std=0.0", "ppo.target_kl=0.02"]
THRESHOLD = 400.0


@pytest.mark.slow
def test_ppo_with_two_ray_workers_balances_cartpole(ray_cluster):
    cfg = load_experiment(CONFIG, ["train.total_steps=65536", "train.eval_every_steps=8192",
                                   "train.eval_episodes=5", "train.progress=false", *ROBUST])
    tc = cfg.train
    configure_torch(tc.torch_threads, tc.deterministic)  # as the runner does
    learner = PpoLearner(cfg)
    learner.env.close()  # the Ray workers step the envs
    src = RayRolloutSource(cfg.env.id, cfg.ppo.num_envs, workers=2, randomization=cfg.env.randomization,
                           run_seed=cfg.seed)
    eval_env = make_env(cfg.env.id, randomization=cfg.env.randomization, seed=tc.eval_seed_start)
    history = []
    try:
        src.reset(seed=cfg.seed)
        for target in range(tc.eval_every_steps, tc.total_steps + 1, tc.eval_every_steps):
            ppo_train_until(learner, src, target)
            policy = learner.policy_module().eval()
            eps = evaluate_episodes(policy, eval_env, [tc.eval_seed_start + i for i in range(tc.eval_episodes)])
            history.append((learner.env_steps, float(np.mean([e["return"] for e in eps]))))
            policy.train()
            if history[-1][1] >= THRESHOLD:
                break
        stats = src.pop_stats()
    finally:
        src.close()
        eval_env.close()
    print("eval return by env step:", history)
    assert learner.env_steps <= tc.total_steps
    assert stats["rollout_batches"] == 2 * learner.iteration and stats["rollout_stale_dropped"] == 0
    assert max(r for _, r in history) >= THRESHOLD, f"eval return by step: {history}"
