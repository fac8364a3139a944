"""robot-rl export on a real (tiny) SAC run: parity from env rollouts, printed checks, runtime load, refusals."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from robot_rl.cli import main
from robot_rl.core.profile import load_profile
from robot_rl.export.runtime import OnnxPolicy
from robot_rl.scale.envs import make_env
from robot_rl.train import load_policy

ENV_ID = "robot_rl/CartpoleBalance-v0"
SAC_TINY = {
    "algo": "sac", "seed": 0,
    "env": {"id": ENV_ID, "randomization": "default"},
    "train": {"total_steps": 300, "log_every_steps": 100, "eval_every_steps": 300, "eval_episodes": 1,
              "checkpoint_every_steps": 300, "progress": False},
    "sac": {"batch_size": 32, "learning_starts": 100, "actor_hidden": [32, 32], "critic_hidden": [32, 32],
            "buffer_size": 10000},
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("export_cli")
    cfg = root / "sac_tiny.yaml"
    cfg.write_text(yaml.safe_dump(SAC_TINY))
    assert main(["train", "--config", str(cfg), "--run-dir", str(root / "run")]) == 0
    return root / "run"


def test_export_command_end_to_end(run_dir, tmp_path, capsys):
    out = tmp_path / "models" / "cartpole_sac_tiny"
    assert main(["export", str(run_dir), "--out", str(out), "--n-parity", "1200"]) == 0
    text = capsys.readouterr().out
    for needle in ("onnx.checker (full_check) ........ passed", "parity torch vs onnxruntime", "on 1200 observations",
                   "robot runtime load (OnnxPolicy) .. passed", "randomization default"):
        assert needle in text, text
    sc = json.loads((out / "policy.json").read_text())
    pol = load_policy(run_dir)
    assert sc["env_id"] == ENV_ID and sc["algo"] == "sac" and sc["robot"]["profile"] == "cartpole"
    assert sc["training"]["config_hash"] == pol.config_hash and sc["training"]["config"]["sac"]["batch_size"] == 32
    assert sc["obs"]["names"] == pol.obs_names and all(sc["obs"]["units"])
    assert sc["action"]["joints"] == ["slider"] and sc["action"]["units"] == ["N"]
    assert sc["action"]["min"] == [-10.0] and sc["action"]["max"] == [10.0]
    assert sc["checks"]["parity"]["n"] == 1200 and sc["checks"]["parity"]["max_abs_diff"] <= 1e-4

    # The artifact reproduces the env's command: ctrl = mid + half * policy(obs) on fresh observations.
    profile = load_profile("cartpole")
    runtime = OnnxPolicy(out, profile, obs_names=pol.obs_names)
    env = make_env(ENV_ID, seed=5)
    obs, _ = env.reset(seed=5)
    for _ in range(50):
        with torch.no_grad():
            a = pol.module(torch.as_tensor(obs[None], dtype=torch.float32))[0].numpy()
        assert abs(runtime(obs)[0] - 10.0 * float(a[0])) < 1e-4
        obs, *_ = env.step(a)
    env.close()


def test_export_command_refusals(run_dir, tmp_path, capsys):
    out = tmp_path / "m"
    assert main(["export", str(run_dir), "--out", str(out), "--n-parity", "999"]) == 2
    assert "--n-parity must be >= 1000" in capsys.readouterr().err
    assert main(["export", str(run_dir), "--out", str(out), "--profile", "pendulum"]) == 2
    assert "profile 'pendulum' does not fit env" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "neither a run directory nor a checkpoint" in capsys.readouterr().err
    assert not out.exists()
