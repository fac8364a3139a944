"""`robot-rl train` on envs robot_rl did not write: a Gymnasium id and a user's own registered env ("module:Id").

Bad ids and spaces are refused before the run directory exists, with the id in the message; export says that such
an env has no robot profile.
"""

import json
import textwrap
from pathlib import Path

import pytest
import yaml
from train_tiny_configs import SAC_TINY

from robot_rl.cli import main
from robot_rl.scale.envs import make_env

USER_ENV = '''
import gymnasium as gym
import numpy as np


class PointMass(gym.Env):
    """A 1-D point pushed by a force in [-2, 2] N toward the origin (float64 observations, as many user envs)."""

    def __init__(self):
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float64)
        self.action_space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = self.np_random.uniform(-1, 1, 2)
        return self.x.copy(), {}

    def step(self, action):
        self.x[1] += 0.05 * float(np.clip(action[0], -2, 2))
        self.x[0] += 0.05 * self.x[1]
        return self.x.copy(), -float(self.x[0] ** 2), False, False, {}


gym.register("PointMass-v0", entry_point=PointMass, max_episode_steps=50)
'''


def _config(tmp_path, env_id: str) -> str:
    raw = {**SAC_TINY, "env": {"id": env_id, "randomization": None}}
    raw["sac"] = {k: v for k, v in SAC_TINY["sac"].items() if k != "normalize_obs"}  # SAC's default: off
    raw["train"] = {**SAC_TINY["train"], "total_steps": 300, "eval_every_steps": 150, "checkpoint_every_steps": 150}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "user_envs_rr:PointMass-v0"])
def test_train_and_evaluate_on_foreign_env(tmp_path, monkeypatch, capsys, env_id):
    (tmp_path / "user_envs_rr.py").write_text(textwrap.dedent(USER_ENV))
    monkeypatch.syspath_prepend(str(tmp_path))
    run_dir = tmp_path / "run"
    assert main(["train", "--config", _config(tmp_path, env_id), "--run-dir", str(run_dir)]) == 0
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "complete" and info["env_steps"] == 300
    assert main(["evaluate", str(run_dir), "--episodes", "1", "--randomization", "none"]) == 0
    capsys.readouterr()
    # export needs a robot profile, and says so
    assert main(["export", str(run_dir), "--out", str(tmp_path / "exp")]) != 0
    assert "has no robot profile; pass --profile" in capsys.readouterr().err


def test_foreign_env_actions_rescaled_to_unit_box(tmp_path, monkeypatch):
    (tmp_path / "user_envs_rr.py").write_text(textwrap.dedent(USER_ENV))
    monkeypatch.syspath_prepend(str(tmp_path))
    env = make_env("user_envs_rr:PointMass-v0")
    assert env.action_space.low.tolist() == [-1.0] and env.action_space.high.tolist() == [1.0]
    env.reset(seed=0)
    env.step(env.action_space.high)  # +1 -> +2 N on the user's env
    assert env.unwrapped.x[1] != 0


@pytest.mark.parametrize("env_id, randomization, message", [
    ("CartPole-v1", None, "has a Discrete action space"),
    ("NoSuchEnvAnywhere-v3", None, "doesn't exist"),
    ("robot_rl/NoSuchTask-v0", None, "unknown env id"),
    ("no_such_module_rr:Foo-v0", None, "No module named 'no_such_module_rr'"),
    ("Pendulum-v1", "default", "set env.randomization: null"),
])
def test_bad_env_refused_before_run_dir(tmp_path, capsys, env_id, randomization, message):
    raw = {**SAC_TINY, "env": {"id": env_id, "randomization": randomization}}
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    assert main(["train", "--config", str(cfg), "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert f"env.id {env_id!r}" in err and message in err
    assert not (tmp_path / "run").exists()


def test_pets_env_id_checked_too(tmp_path, capsys):
    root = Path(__file__).resolve().parents[2]
    args = ["train", "--config", str(root / "config" / "pets_cartpole_swingup.yaml"), "--run-dir",
            str(tmp_path / "run"), "--set", "env_id=robot_rl/NoSuchTask-v0"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "env_id 'robot_rl/NoSuchTask-v0': unknown env id" in err
    assert not (tmp_path / "run").exists()
