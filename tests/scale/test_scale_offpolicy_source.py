"""Off-policy (SAC) learner fed from a rollout source: replay holds the workers' transitions, updates follow utd."""

import numpy as np
import torch

from robot_rl.algos.sac import SacLearner
from robot_rl.scale.offpolicy_rollout import offpolicy_train_until, transitions
from robot_rl.scale.source import LocalRolloutSource
from robot_rl.scale.worker import uniform_snapshot
from robot_rl.train.config import load_experiment

SAC_RAW = {
    "algo": "sac", "seed": 0,
    "env": {"id": "robot_rl/PendulumSwingup-v0", "randomization": "default"},
    "train": {"total_steps": 400, "progress": False},
    "sac": {"batch_size": 32, "learning_starts": 160, "actor_hidden": [32, 32], "critic_hidden": [32, 32],
            "buffer_size": 10000},
}


def test_sac_replay_filled_from_source_with_utd_updates():
    torch.set_num_threads(1)
    learner = SacLearner(load_experiment(raw=SAC_RAW))
    src = LocalRolloutSource("robot_rl/PendulumSwingup-v0", 2, workers=2, randomization="default", run_seed=0,
                             max_staleness=None)
    src.reset(seed=3)
    offpolicy_train_until(learner, src, 160, batch_steps=40)  # warm-up: uniform random actions
    assert learner.env_steps == 160 and src.version == 1
    assert learner.n_updates == 1  # as the local loop: the first update at env step == learning_starts
    first = learner.replay.act[:160].numpy()
    assert np.abs(first).max() <= 1.0 and first.std() > 0.45, "warm-up actions should be uniform in [-1, 1]"
    offpolicy_train_until(learner, src, 240, batch_steps=40)  # SAC actor acting, one update per env step
    assert learner.env_steps == 240 and learner.n_updates == 81
    assert len(learner.replay) == 240
    # the replay's first rows are worker 0's first batch (same seeds, same uniform stream), successors included
    src2 = LocalRolloutSource("robot_rl/PendulumSwingup-v0", 2, workers=2, randomization="default", run_seed=0)
    src2.reset(seed=3)
    src2.set_policy(uniform_snapshot(1))
    b0 = src2.collect(40)[0]
    obs, act, rew, nxt, term = transitions(b0)
    np.testing.assert_array_equal(learner.replay.obs[:40].numpy(), obs)
    np.testing.assert_array_equal(learner.replay.next_obs[:40].numpy(), nxt)
    np.testing.assert_allclose(learner.replay.rew[:40].numpy(), rew)
    assert not term.any()  # pendulum never terminates; one env per worker, so rows are consecutive steps
    np.testing.assert_array_equal(nxt[:-1], obs[1:])
