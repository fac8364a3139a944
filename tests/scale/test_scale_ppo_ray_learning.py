"""PPO fed by 2 Ray rollout workers balances the cart-pole within the local PPO's step budget.

Driven by ``robot_rl.scale.ppo_rollout.ppo_train_until``: the real ``PpoLearner`` (networks, ``_update``), with its
rollouts collected by Ray actors instead of its own vector env. Config and budget: the local runner reaches an
evaluation return >= 400 (of 500) by 20480 steps with the same settings for seeds 0 and 1 (371 / 476 at 16384, 495 /
434 at 20480; docs/scale.md), and so does this learner fed by in-process workers (``LocalRolloutSource``, the same
batches as Ray) for seeds 0 and 1 (461 at 12288 / 493 at 20480).
"""

import numpy as np
import pytest

from robot_rl.algos.ppo import PpoLearner
from robot_rl.scale.ppo_rollout import ppo_train_until
from robot_rl.scale.source import RayRolloutSource
from robot_rl.train.config import TRAIN_SEED_LIMIT, load_experiment
from robot_rl.train.envs import evaluate_episodes, make_env
from robot_rl.train.runner import configure_torch

BALANCE = {
    "algo": "ppo", "seed": 0,
    "env": {"id": "robot_rl/CartpoleBalance-v0", "randomization": "default"},
    "train": {"total_steps": 32768, "progress": False},
    "ppo": {"num_envs": 8, "n_steps": 64, "gamma": 0.95, "learning_rate": 0.001, "clip_value_loss": False,
            "max_grad_norm": 5.0},
}
THRESHOLD = 400.0  # eval return (max 500, reward <= 1 per step): the pole stays up (nearly) all 10 s


@pytest.mark.slow
def test_ppo_with_two_ray_workers_balances_cartpole(ray_cluster):
    cfg = load_experiment(raw=BALANCE)
    configure_torch(1, True)  # as the runner does (train.torch_threads=1): the learner shares 2 cores with Ray
    learner = PpoLearner(cfg)
    learner.env.close()  # the Ray workers step the envs
    src = RayRolloutSource(cfg.env.id, cfg.ppo.num_envs, workers=2, randomization=cfg.env.randomization,
                           run_seed=cfg.seed)
    eval_env = make_env(cfg.env.id, randomization=cfg.env.randomization, seed=TRAIN_SEED_LIMIT)
    history = []
    try:
        src.reset(seed=cfg.seed)
        for target in range(12288, cfg.train.total_steps + 1, 4096):
            ppo_train_until(learner, src, target)
            policy = learner.policy_module().eval()
            eps = evaluate_episodes(policy, eval_env, [TRAIN_SEED_LIMIT + i for i in range(3)])
            history.append((learner.env_steps, float(np.mean([e["return"] for e in eps]))))
            policy.train()
            if history[-1][1] >= THRESHOLD:
                break
        stats = src.pop_stats()
    finally:
        src.close()
        eval_env.close()
    assert learner.env_steps <= cfg.train.total_steps
    assert stats["rollout_batches"] == 2 * learner.iteration and stats["rollout_stale_dropped"] == 0
    assert history[-1][1] >= THRESHOLD, f"eval return by step: {history}"
