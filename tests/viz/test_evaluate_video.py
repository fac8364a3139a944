"""robot-rl evaluate --video: evaluation episodes of a tiny SAC run rendered with return / step captions."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from robot_rl.cli import main
from robot_rl.viz.video import read_video

SAC_TINY = {
    "algo": "sac", "seed": 0,
    "env": {"id": "robot_rl/PendulumSwingup-v0", "randomization": "default"},
    "train": {"total_steps": 300, "log_every_steps": 100, "eval_every_steps": 300, "eval_episodes": 1,
              "checkpoint_every_steps": 300, "progress": False},
    "sac": {"batch_size": 32, "learning_starts": 100, "actor_hidden": [32, 32], "critic_hidden": [32, 32],
            "buffer_size": 10000},
}
EPISODE_STEPS = 200  # PendulumSwingup-v0 time limit; control period 50 ms


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalvideo")
    cfg = root / "sac_tiny.yaml"
    cfg.write_text(yaml.safe_dump(SAC_TINY))
    assert main(["train", "--config", str(cfg), "--run-dir", str(root / "run")]) == 0
    return root / "run"


def _check_frames(v: np.ndarray) -> None:
    assert v.std() > 5.0  # not blank
    body = v[:, 40:].astype(float)  # below the caption
    diffs = np.abs(body[1:] - body[:-1]).mean(axis=(1, 2, 3))
    assert (diffs > 0.05).mean() > 0.3  # the pendulum moves
    caption = v[:, :30, :200].astype(float)
    assert np.abs(caption[150] - caption[10]).mean() > 1.0  # step / return captions change over the episode


@pytest.mark.slow  # ~90 s of software rendering on a loaded 2-core machine; the JSON test below covers one episode
def test_evaluate_writes_captioned_video(run_dir, tmp_path, capsys):
    out = tmp_path / "eval.mp4"
    assert main(["evaluate", str(run_dir), "--episodes", "2", "--randomization", "none", "--video", str(out)]) == 0
    cap = capsys.readouterr()
    assert "over 2 episodes" in cap.out  # the evaluation itself still runs and prints
    n = 2 * (EPISODE_STEPS + 1)  # a frame per step plus the final state, per episode
    assert f"({n} frames at 20.0 fps)" in cap.err
    v = read_video(out)
    assert v.shape == (n, 240, 320, 3)
    _check_frames(v)
    _check_frames(v[EPISODE_STEPS + 1:])  # the second episode too


def test_evaluate_without_rendering_prints_hint(run_dir, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    env["MUJOCO_GL"] = "glfw"  # no display: no GL context can be made
    out = tmp_path / "eval.mp4"
    proc = subprocess.run([sys.executable, "-m", "robot_rl.cli", "evaluate", str(run_dir), "--episodes", "1",
                           "--video", str(out)], capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr
    hint = [line for line in proc.stderr.splitlines() if "no video" in line]
    assert len(hint) == 1 and "libosmesa6" in hint[0]
    assert "over 1 episodes" in proc.stdout and not out.exists()


def test_evaluate_json_stays_parseable_with_video(run_dir, tmp_path, capsys):
    import json

    out = tmp_path / "eval.gif"
    assert main(["evaluate", str(run_dir), "--episodes", "1", "--json", "--video", str(out)]) == 0
    cap = capsys.readouterr()
    summary = json.loads(cap.out)  # the video line goes to stderr
    assert summary["episodes"] == 1
    assert f"({EPISODE_STEPS + 1} frames at 20.0 fps)" in cap.err
    v = read_video(out)
    assert v.shape == (EPISODE_STEPS + 1, 240, 320, 3)
    _check_frames(v)
