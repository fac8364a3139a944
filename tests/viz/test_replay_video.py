"""robot-rl replay --video: logged run vs open-loop re-simulation, from a bag exported in the test."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from robot_rl.data.bags import export_bag, import_bag
from robot_rl.data.dataset import Episode, record_episode
from robot_rl.envs import make
from robot_rl.viz.run_videos import open_loop_resim
from robot_rl.viz.video import read_video

ENV = "robot_rl/CartpoleSwingup-v0"
STEPS = 40


def _delayed(env, seed, delay=3):
    """A 'real robot' run: logged command k acts only at step k + delay, so the open-loop sim drifts."""
    rng = np.random.default_rng(seed)
    acts = rng.uniform(-1, 1, (STEPS, 1)).astype(np.float32)
    applied = iter(np.r_[np.zeros((delay, 1), np.float32), acts])
    ep = record_episode(env, lambda o, r: next(applied), seed=seed, max_steps=STEPS)
    return Episode(ep.observations, acts[:len(ep.actions)], ep.rewards, ep.terminations, ep.truncations, ep.time_s,
                   ep.infos, ep.metadata)


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    env = make(ENV, max_episode_steps=STEPS)
    path = tmp_path_factory.mktemp("bag") / "run"
    export_bag([_delayed(env, 0)], path, env.unwrapped.profile)
    return path


def test_open_loop_resim_exact_on_sim_data_and_drifts_with_latency():
    env = make(ENV, max_episode_steps=STEPS)
    exact = record_episode(env, lambda o, r: r.uniform(-1, 1, 1), seed=1)
    q = open_loop_resim(env, exact)
    assert q.shape == exact.infos["joint_positions"].shape
    np.testing.assert_allclose(q, exact.infos["joint_positions"], atol=1e-9)  # same model, same commands
    delayed = _delayed(env, 2)
    drift = np.abs(open_loop_resim(env, delayed) - delayed.infos["joint_positions"]).max(axis=1)
    assert drift[0] == 0.0 and drift[-1] > 0.02  # starts in the logged state, drifts open loop


def test_cli_replay_video_from_bag(bag, tmp_path):
    env = make(ENV)
    episodes, _ = import_bag(bag, env)
    assert len(episodes) == 1
    n_frames = len(episodes[0].actions) + 1
    out = tmp_path / "replay.mp4"
    proc = subprocess.run([sys.executable, "-m", "robot_rl.cli", "replay", str(bag), "--env", ENV, "--video",
                           str(out), "--video-size", "96", "128"], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert f"({n_frames} frames at 50.0 fps" in proc.stdout  # cartpole control period 20 ms
    v = read_video(out)
    assert v.shape == (n_frames, 96, 256, 3)
    assert v.std() > 5.0  # not blank
    diffs = np.abs(v[1:].astype(float) - v[:-1].astype(float)).mean(axis=(1, 2, 3))
    assert (diffs > 0.05).mean() > 0.5  # the cart-pole moves
    left, right = v[..., :128, :].astype(float), v[..., 128:, :].astype(float)
    # Both halves start in the same logged state (captions differ only in a corner); the open-loop sim drifts.
    body = (slice(30, None), slice(None))
    first_gap = np.abs(left[0][body] - right[0][body]).mean()
    last_gap = np.abs(left[-1][body] - right[-1][body]).mean()
    assert last_gap > first_gap + 0.5, (first_gap, last_gap)


def test_cli_replay_without_rendering_prints_hint_and_still_reports(bag, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    env["MUJOCO_GL"] = "glfw"  # no display: no GL context can be made
    out = tmp_path / "replay.mp4"
    proc = subprocess.run([sys.executable, "-m", "robot_rl.cli", "replay", str(bag), "--env", ENV, "--video",
                           str(out), "--resim", "--out", str(tmp_path / "rep")], capture_output=True, text=True,
                          timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr
    hint = [line for line in proc.stderr.splitlines() if "no video" in line]
    assert len(hint) == 1 and "libosmesa6" in hint[0]
    assert not out.exists()
    assert "| slider |" in (tmp_path / "rep" / "gap_report.md").read_text()
