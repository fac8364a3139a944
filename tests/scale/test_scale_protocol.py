"""The learners satisfy the protocols that robot_rl.scale is written against (robot_rl/scale/protocol.py), so a
renamed learner member fails here and not only in a Ray run."""

import pytest
from scale_tiny_configs import PPO_RAW

from robot_rl.scale.protocol import GaussianSnapshotLearner, OffPolicyLearner, OnPolicyLearner, SnapshotLearner
from robot_rl.scale.worker import gaussian_snapshot, tanh_gaussian_snapshot
from robot_rl.train.config import load_experiment
from robot_rl.train.runner import make_learner

SAC_RAW = {
    "algo": "sac", "seed": 0, "env": {"id": "robot_rl/PendulumSwingup-v0"},
    "train": {"total_steps": 64, "progress": False},
    "sac": {"batch_size": 8, "learning_starts": 8, "actor_hidden": [8], "critic_hidden": [8], "buffer_size": 100},
}


@pytest.fixture(params=["sac", "ppo"])
def learner(request):
    learner = make_learner(load_experiment(raw={"sac": SAC_RAW, "ppo": PPO_RAW}[request.param]))
    yield learner
    learner.close()


def test_learners_satisfy_the_scale_protocols(learner):
    assert isinstance(learner, SnapshotLearner)
    if learner.algo == "sac":
        assert isinstance(learner, OffPolicyLearner)
        assert tanh_gaussian_snapshot(learner)["kind"] == "tanh_gaussian"
    else:
        assert isinstance(learner, GaussianSnapshotLearner) and isinstance(learner, OnPolicyLearner)
        assert gaussian_snapshot(learner)["kind"] == "gaussian"


def test_a_learner_missing_a_member_does_not_satisfy_them(learner):
    del learner.n_obs
    assert not isinstance(learner, SnapshotLearner)
