"""robot-rl train / evaluate commands, load_policy, and config / checkpoint errors."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from train_tiny_configs import SAC_TINY

from robot_rl.cli import main
from robot_rl.core.config import config_hash
from robot_rl.scale.envs import make_env
from robot_rl.train import CheckpointError, load_policy
from robot_rl.train.config import load_experiment


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    cfg_path = root / "sac_tiny.yaml"
    cfg_path.write_text(yaml.safe_dump(SAC_TINY))
    rc = main(["train", "--config", str(cfg_path), "--run-dir", str(root / "run"), "--set", "train.total_steps=300",
               "--set", "train.checkpoint_every_steps=150"])
    assert rc == 0
    return root / "run"


def test_run_directory_layout(run_dir):
    for name in ("config.yaml", "metrics.csv", "eval.csv", "run.json", "learning_curve.png", "checkpoints/latest.pt",
                 "checkpoints/best.pt"):
        assert (run_dir / name).is_file(), name
    assert any((run_dir / "tb").iterdir())
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "complete" and info["env_steps"] == 300 and info["algo"] == "sac"
    assert info["config_hash"] == config_hash(load_experiment(run_dir / "config.yaml"))


def test_load_policy_module_contract(run_dir):
    pol = load_policy(run_dir)
    assert pol.env_id == "robot_rl/PendulumSwingup-v0" and pol.algo == "sac"
    assert pol.checkpoint.name == "best.pt"
    assert pol.obs_names == ["pole_angle_cos", "pole_angle_sin", "pole_angular_velocity"]
    assert "return_mean" in pol.metrics
    assert pol.config_hash == config_hash(load_experiment(run_dir / "config.yaml"))
    obs = torch.randn(16, 3) * 5
    act = pol.module(obs)
    assert act.shape == (16, 1) and act.dtype == torch.float32 and act.abs().max() <= 1.0
    torch.testing.assert_close(pol.module(obs), act)  # deterministic
    # normalization is inside the module: its statistics are not the identity after training
    assert not torch.allclose(pol.module.normalizer.mean, torch.zeros(3, dtype=torch.float64))
    latest = load_policy(run_dir / "checkpoints" / "latest.pt")
    assert latest.module(obs).shape == (16, 1)


def test_evaluate_command_table(run_dir, capsys):
    assert main(["evaluate", str(run_dir), "--episodes", "2", "--randomization", "none"]) == 0
    out = capsys.readouterr().out
    assert "2000000000" in out and "2000000001" in out and "over 2 episodes" in out
    assert main(["evaluate", str(run_dir), "--episodes", "1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["episodes"] == 1 and data["randomization"] == "default" and data["success_rate"] in (0.0, 1.0)


def test_corrupt_checkpoint_is_named(run_dir, tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes((run_dir / "checkpoints" / "best.pt").read_bytes()[:100])
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_policy(bad)
    assert main(["evaluate", str(bad)]) == 2
    assert "bad.pt" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match="no checkpoints"):
        load_policy(tmp_path)


def test_train_refuses_existing_run_and_bad_resume(run_dir, tmp_path, capsys):
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump(SAC_TINY))
    assert main(["train", "--config", str(cfg_path), "--run-dir", str(run_dir)]) == 1
    assert "already holds a training run" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "no config.yaml" in capsys.readouterr().err
    assert main(["train", "--resume", str(run_dir), "--set", "sac.batch_size=8"]) == 2
    assert "only accepts train.*" in capsys.readouterr().err


@pytest.mark.parametrize(("override", "message"), [
    ("sac.batch_siz=3", "sac.batch_siz: unknown key 'batch_siz'"),
    ("train.total_steps=ten", "train.total_steps: expected int"),
    ("sac.tau=.nan", "sac.tau: expected a finite float"),
    ("algo=dqn", "algo: unknown algo 'dqn'"),
    ("env.randomization=3", "env.randomization"),
])
def test_bad_override_errors_name_the_set_argument(tmp_path, capsys, override, message):
    """The value came from --set, not from the file: the error names the argument (and not the file)."""
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump(SAC_TINY))
    assert main(["train", "--config", str(cfg_path), "--run-dir", str(tmp_path / "r"), "--set", override]) == 2
    err = capsys.readouterr().err
    assert message in err and f"--set {override}: " in err and "c.yaml" not in err


def test_combination_refused_by_a_section_names_file_and_set(tmp_path, capsys):
    """A section's own check (sac.__post_init__) refuses the file's values with the override: both are named."""
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump(SAC_TINY))
    assert main(["train", "--config", str(cfg_path), "--run-dir", str(tmp_path / "r"), "--set", "sac.gamma=1.5"]) == 2
    err = capsys.readouterr().err
    assert "sac.gamma must be in (0, 1]" in err and "c.yaml with --set sac.gamma=1.5" in err


def test_unknown_key_from_set_names_the_argument_not_the_file(tmp_path, capsys, monkeypatch):
    """``--set no_such.key=1`` creates a section the file never had: the error is the argument's."""
    config = Path(__file__).resolve().parents[2] / "config" / "sac_cartpole_swingup.yaml"
    monkeypatch.chdir(tmp_path)  # the default run directory would go here: nothing may be created
    assert main(["train", "--config", str(config), "--set", "no_such.key=1"]) == 2
    err = capsys.readouterr().err
    assert "robot-rl train: config error: --set no_such.key=1: no_such: unknown key 'no_such'" in err
    assert "sac_cartpole_swingup.yaml" not in err
    assert list(tmp_path.iterdir()) == []


def test_goal_conditioned_env_is_flattened():
    env = make_env("robot_rl/ArmReach-v0", seed=0)
    obs, _ = env.reset(seed=1)
    inner = env.unwrapped.observation_space
    n = inner["observation"].shape[0] + inner["desired_goal"].shape[0]
    assert obs.shape == (n,) and obs.dtype == np.float32
    from robot_rl.envs import make

    raw, _ = make("robot_rl/ArmReach-v0", seed=0).reset(seed=1)
    np.testing.assert_array_equal(obs, np.concatenate([raw["observation"], raw["desired_goal"]]))
