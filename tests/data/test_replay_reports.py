"""robot-rl replay: open-loop action agreement and the sim-to-real gap report (one-step re-simulation, latency)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import torch

from robot_rl.commands.replay import action_agreement, gap_report, resimulate, torch_policy, xcorr_lag
from robot_rl.data.dataset import DatasetWriter, Episode, record_episode
from robot_rl.envs import make


def _delayed_episode(env, seed, delay, n=150):
    """A 'real robot' run: the logged command at step k acts only at step k + delay (transport latency)."""
    rng = np.random.default_rng(seed)
    acts = rng.uniform(-1, 1, (n, 1)).astype(np.float32)
    applied = iter(np.r_[np.zeros((delay, 1), np.float32), acts])
    ep = record_episode(env, lambda o, r: next(applied), seed=seed, max_steps=n)
    return Episode(ep.observations, acts[:len(ep.actions)], ep.rewards, ep.terminations, ep.truncations, ep.time_s,
                   ep.infos, ep.metadata)


def test_xcorr_lag_finds_a_shift():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(400)
    assert xcorr_lag(x, np.r_[np.zeros(3), x[:-3]], 10) == 3
    assert xcorr_lag(x, x, 10) == 0


def test_resim_of_sim_data_has_no_gap_and_latency_is_measured(tmp_path):
    env = make("robot_rl/CartpoleSwingup-v0", max_episode_steps=150)
    exact = [record_episode(env, lambda o, r: r.uniform(-1, 1, 1), seed=s) for s in range(2)]
    sims = resimulate(env, exact)
    err = max(np.abs(s["q_pred"] - s["q_log"]).max() for s in sims)
    assert err < 1e-9  # the model that produced the log predicts it exactly
    text = gap_report(env, sims, tmp_path, "sim")
    assert "| slider | 0 steps | 0 steps | 0 ms |" in text
    delayed = [_delayed_episode(env, s, delay=2) for s in range(2)]
    text = gap_report(env, resimulate(env, delayed), tmp_path, "delayed")
    assert "| slider | 2 steps | 0 steps | 40 ms |" in text
    assert (tmp_path / "gap_report.md").read_text() == text
    assert (tmp_path / "gap_positions.png").stat().st_size > 1000 and (tmp_path / "gap_rmse.png").exists()


def test_action_agreement_hand_computed():
    acts = np.array([[0.5, -1.0], [0.0, 0.2]], np.float32)
    ep = Episode(np.zeros((3, 4), np.float32), acts, np.zeros(2), np.zeros(2, bool), np.array([False, True]),
                 np.array([0.0, 0.1, 0.2]))

    res = action_agreement(torch_policy(lambda obs: torch.zeros(obs.shape[0], 2)), [ep], tolerance=0.6)
    np.testing.assert_allclose(res["rmse"], [np.sqrt(0.125), np.sqrt((1 + 0.04) / 2)], rtol=1e-6)
    np.testing.assert_allclose(res["mae"], [0.25, 0.6], rtol=1e-6)
    assert res["within"] == 0.5  # step 0 has |-1.0| > 0.6


def test_cli_resim_on_a_dataset(tmp_path):
    env = make("robot_rl/CartpoleSwingup-v0", max_episode_steps=60)
    with DatasetWriter(tmp_path / "d", dataset_id="robot_rl/cp-v0", observation_space=env.observation_space,
                       action_space=env.action_space,
                       robot_rl_metadata={"env_id": "robot_rl/CartpoleSwingup-v0"}) as w:
        w.add(record_episode(env, lambda o, r: r.uniform(-1, 1, 1), seed=0))
    proc = subprocess.run([sys.executable, "-m", "robot_rl.cli", "replay", str(tmp_path / "d"), "--resim", "--out",
                           str(tmp_path / "rep")], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert "| hinge |" in (tmp_path / "rep" / "gap_report.md").read_text()


def test_cli_policy_agreement_report(tmp_path):
    from robot_rl.algos.gcbc import GcbcConfig, GcbcExperiment
    from robot_rl.algos.iql import DatasetConfig
    from robot_rl.core.experiment import EnvConfig
    from robot_rl.train import save_atomic

    env = make("robot_rl/ArmReach-v0", max_episode_steps=30)
    with DatasetWriter(tmp_path / "d", dataset_id="robot_rl/arm-v0", observation_space=env.observation_space,
                       action_space=env.action_space, robot_rl_metadata={"env_id": "robot_rl/ArmReach-v0"}) as w:
        for s in range(2):
            w.add(record_episode(env, lambda o, r: r.uniform(-1, 1, 7), seed=s))
    learner = GcbcExperiment(algo="gcbc", env=EnvConfig("robot_rl/ArmReach-v0"),
                             dataset=DatasetConfig(str(tmp_path / "d")),
                             gcbc=GcbcConfig(hidden=(16,), batch_size=32)).make_learner()
    learner.train_until(3)
    save_atomic(tmp_path / "run" / "checkpoints" / "best.pt", {
        "format_version": 1, "kind": "policy", "policy": learner.policy_spec(),
        "meta": {"env_id": "robot_rl/ArmReach-v0", "algo": "gcbc", "config": {}, "config_hash": "h",
                 "obs_names": [f"o{i}" for i in range(17)]}})
    proc = subprocess.run([sys.executable, "-m", "robot_rl.cli", "replay", str(tmp_path / "d"), "--policy",
                           str(tmp_path / "run"), "--out", str(tmp_path / "rep")], capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "rep" / "agreement.md").read_text()
    assert "2 episode(s)" in text and "| a[6] |" in text and (tmp_path / "rep" / "agreement.png").exists()
    # the exported ONNX artifact of the same policy agrees with the torch module (robot units mapped back)
    from robot_rl.commands.replay import onnx_policy
    from robot_rl.data.dataset import load_dataset
    from robot_rl.export.onnx import export_policy
    from robot_rl.scale.envs import flatten_goal_obs

    eps = load_dataset(tmp_path / "d").episodes
    parity = np.concatenate([flatten_goal_obs(e.observations) for e in eps] * 20)
    export_policy(learner.policy_module().eval(), tmp_path / "model", profile=env.unwrapped.profile,
                  obs_names=[f"o{i}" for i in range(17)], obs_units=[""] * 17, parity_obs=parity)
    via_onnx = action_agreement(onnx_policy(tmp_path / "model", env), eps, 0.1)
    via_torch = action_agreement(torch_policy(learner.policy_module().eval()), eps, 0.1)
    np.testing.assert_allclose(via_onnx["rmse"], via_torch["rmse"], atol=1e-4)
