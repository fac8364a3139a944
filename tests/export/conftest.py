"""Fixtures for the export tests: a small robot (MJCF + profile YAML written to a temp dir) and a randomly
initialized torch policy with observation normalization inside, exported once per module."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from robot_rl.core.profile import load_profile

MJCF = """<mujoco model="testbot">
  <option timestep="0.005"/>
  <worldbody>
    <body name="cart">
      <joint name="slider" type="slide" axis="1 0 0" range="-1 1"/>
      <geom type="box" size="0.1 0.1 0.1" mass="1"/>
      <body name="arm" pos="0 0 0.1">
        <joint name="hinge" type="hinge" axis="0 1 0"/>
        <geom type="capsule" fromto="0 0 0 0 0 0.5" size="0.02" mass="0.1"/>
      </body>
    </body>
  </worldbody>
  <actuator>
    <motor name="push" joint="slider" ctrlrange="-5 5"/>
    <motor name="twist" joint="hinge" ctrlrange="-2 2"/>
  </actuator>
</mujoco>
"""

PROFILE = """name: testbot
mjcf: {mjcf}
command_interface: effort
controller: forward_effort_controller
control_period_s: 0.02
sensor_period_s: 0.005
joints:
  - name: slider
    position_min: -1.0
    position_max: 1.0
    velocity_max: 4.0
    position_unit: m
  - name: hinge
    velocity_max: 20.0
command_joints: [slider, hinge]
"""

OBS_NAMES = ["slider_pos", "hinge_cos", "hinge_sin", "slider_vel", "hinge_vel"]
OBS_UNITS = ["m", "-", "-", "m/s", "rad/s"]


class NormalizedMLP(torch.nn.Module):
    """Raw obs -> normalized action in [-1, 1], running-mean/std normalization inside (like a trained policy)."""

    def __init__(self, n_obs: int, n_act: int, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.net = torch.nn.Sequential(torch.nn.Linear(n_obs, 64), torch.nn.Tanh(), torch.nn.Linear(64, 64),
                                       torch.nn.ReLU(), torch.nn.Linear(64, n_act))
        for p in self.net.parameters():
            with torch.no_grad():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        self.register_buffer("mean", torch.randn(n_obs, generator=g))
        self.register_buffer("std", torch.rand(n_obs, generator=g) + 0.5)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(torch.clamp((obs - self.mean) / self.std, -10.0, 10.0)))


def sample_obs(n: int, seed: int = 0) -> np.ndarray:
    """Observations of the testbot's layout: positions in range, angles as cos/sin, velocities."""
    rng = np.random.default_rng(seed)
    q = rng.uniform(-np.pi, np.pi, n)
    return np.stack([rng.uniform(-1, 1, n), np.cos(q), np.sin(q), rng.normal(0, 1, n),
                     rng.normal(0, 3, n)], axis=1).astype(np.float32)


@pytest.fixture(scope="session")
def robot_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("testbot")
    (d / "testbot.xml").write_text(MJCF)
    (d / "testbot.yaml").write_text(PROFILE.format(mjcf=d / "testbot.xml"))
    return d


@pytest.fixture(scope="session")
def profile(robot_dir):
    return load_profile(str(robot_dir / "testbot.yaml"))


@pytest.fixture(scope="session")
def exported(tmp_path_factory, profile):
    """(model_dir, module, sidecar) exported once per session; tests copy it before damaging it."""
    from robot_rl.export.onnx import export_policy

    module = NormalizedMLP(len(OBS_NAMES), 2)
    out = tmp_path_factory.mktemp("models") / "testbot_policy"
    sidecar = export_policy(module, out, profile=profile, obs_names=OBS_NAMES, obs_units=OBS_UNITS,
                            parity_obs=sample_obs(1000), env_id="test/Testbot-v0", algo="sac",
                            config={"lr": 3e-4, "hidden": [64, 64]}, config_hash="abc123",
                            metrics={"eval_return": 123.5, "nan_metric": float("nan")}, parity_source="sample_obs")
    return out, module, sidecar


@pytest.fixture
def artifact(exported, tmp_path):
    """A private copy of the exported artifact directory."""
    dst = tmp_path / "policy_copy"
    shutil.copytree(exported[0], dst)
    return dst


@pytest.fixture(scope="session")
def kit():
    """Helpers for tests: the policy class, the observation sampler and the obs layout."""

    class Kit:
        Policy = NormalizedMLP
        sample = staticmethod(sample_obs)
        obs_names = OBS_NAMES
        obs_units = OBS_UNITS

    return Kit
