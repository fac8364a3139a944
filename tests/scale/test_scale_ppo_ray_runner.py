"""The learner hook: ``robot_rl.train.train`` with ``rollout.backend: ray`` runs PPO / SAC on Ray rollout workers."""

import csv

import pytest
from scale_tiny_configs import PPO_RAW

from robot_rl.train.config import load_experiment
from robot_rl.train.runner import train

SAC_RAW = {
    "algo": "sac", "seed": 0,
    "env": {"id": "robot_rl/PendulumSwingup-v0", "randomization": "default"},
    "train": {"total_steps": 600, "log_every_steps": 200, "eval_every_steps": 600, "eval_episodes": 1,
              "checkpoint_every_steps": 600, "progress": False},
    "sac": {"batch_size": 32, "learning_starts": 200, "actor_hidden": [32, 32], "critic_hidden": [32, 32],
            "buffer_size": 10000},
}


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
@pytest.mark.parametrize("raw", [PPO_RAW, SAC_RAW], ids=["ppo", "sac"])
def test_train_with_ray_rollout_workers(ray_cluster, tmp_path, raw):
    cfg = load_experiment(raw=raw, overrides=["rollout.backend=ray", "rollout.workers=2"])
    info = train(cfg, tmp_path / "run")
    assert info["status"] == "complete" and info["env_steps"] >= cfg.train.total_steps
    rows = _rows(tmp_path / "run" / "metrics.csv")
    assert sum(float(r["rollout_batches"]) for r in rows) > 0
    assert sum(float(r["rollout_restarts"]) for r in rows) == 0
    assert (tmp_path / "run" / "eval.csv").is_file()
    assert load_experiment(tmp_path / "run" / "config.yaml").rollout.backend == "ray"


@pytest.mark.slow
def test_ppo_on_ray_resume_reproduces_uninterrupted_run(ray_cluster, tmp_path):
    cfg = load_experiment(raw=PPO_RAW, overrides=["rollout.backend=ray", "rollout.workers=2"])
    half = cfg.train.checkpoint_every_steps
    train(cfg, tmp_path / "a")
    assert train(cfg, tmp_path / "b", stop_after_steps=half + cfg.train.log_every_steps)["status"] == "interrupted"
    assert train(cfg, tmp_path / "b", resume=True)["status"] == "complete"
    skip = {"time_s", "sps", "rollout_wait_s"}
    a, b = ([{k: v for k, v in r.items() if k not in skip} for r in _rows(tmp_path / d / "metrics.csv")]
            for d in ("a", "b"))
    assert [r["step"] for r in a] == [r["step"] for r in b]
    after = [i for i, r in enumerate(a) if float(r["step"]) > half]
    assert after and all(a[i] == b[i] for i in after), "resumed Ray run differs from the uninterrupted one"
    last_a, last_b = (_rows(tmp_path / d / "eval.csv")[-1]["return_mean"] for d in ("a", "b"))
    assert last_a == last_b
