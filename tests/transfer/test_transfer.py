"""robot-rl transfer: the shipped cart-pole policy on held-out reality samples, in the Python env and through the ROS 2
loop (real sim_robot, policy_node and recorder processes over DDS on loopback), the report, and its refusals.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import pytest

from robot_rl.commands import transfer as transfer_command
from robot_rl.transfer import TransferError, TransferSettings, run_transfer, summarize, write_report
from robot_rl.transfer.runs import load_model, python_episode

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "cartpole_swingup_sac"


def cli(*argv: str) -> int:
    p = argparse.ArgumentParser()
    transfer_command.add_arguments(p)
    return transfer_command.run(p.parse_args(list(argv)))


def test_python_samples_are_the_ones_sim_robot_builds():
    """sim_robot's reality sample (``EnvReality`` on ``make(env_id, randomization, seed)``) is the Python run's."""
    from robot_rl.deploy.sim_plant import EnvReality
    from robot_rl.envs import make

    m = load_model(MODEL, "sac", None)
    for seed in (0, 5):
        env = make(m.env_id, randomization="reality", seed=seed)
        sim_sample = EnvReality(env, env.unwrapped.np_random).sample
        row = python_episode(m, seed, "reality")
        assert row["sample"] == {k: float(v) for k, v in sim_sample.items()}
        assert row["length"] == 500 and not row["terminated"]
    nominal = python_episode(m, 0, None)
    assert nominal["sample"] == {} and nominal["return"] > 380.0


def test_python_only_report(tmp_path):
    out = tmp_path / "t"
    assert cli(str(MODEL), str(MODEL), "--label", "a", "--label", "b", "--samples", "2", "--no-ros",
               "--out", str(out), "--no-progress") == 0
    summary = json.loads((out / "summary.json").read_text())
    a, b = summary["summaries"]
    assert a["python_return"] == b["python_return"]  # the same policy on the same samples
    assert 0.5 < a["python_retention"]["mean"] <= 1.05 and a["nominal_return"]["n"] == 2
    # the shipped swing-up policy trains on CartpoleSwingupRail-v0 and stays off the rail's end stops (the report
    # counts the hits: its predecessor, trained on the suite task, hit one in every episode)
    assert a["nominal_limit_hits"] == 0
    rows = list(csv.DictReader(open(out / "per_sample.csv")))
    assert [r["seed"] for r in rows] == ["0", "1", "0", "1"]
    assert "body_mass_scale/pole" in rows[0] or any(k.startswith("body_mass_scale/") for k in rows[0])
    text = (out / "report.md").read_text()
    assert "| reality return, Python env |" in text and "ROS 2 loop" not in text.split("## a")[0].split("|---|")[1]
    for png in ("returns_per_sample.png", "retention.png"):
        assert (out / png).stat().st_size > 1000


def test_refusals(tmp_path, capsys):
    assert cli(str(tmp_path / "missing"), "--out", str(tmp_path / "o")) == 2
    assert "no policy.json" in capsys.readouterr().err
    assert cli(str(MODEL), str(MODEL), "--no-ros", "--out", str(tmp_path / "o")) == 2
    assert "labels must differ" in capsys.readouterr().err
    assert cli(str(REPO / "models" / "go2_joystick_ppo"), "--out", str(tmp_path / "o")) == 2
    assert "legged velocity-tracking" in capsys.readouterr().err
    assert cli(str(REPO / "models" / "panda_reach_sac"), "--out", str(tmp_path / "o")) == 2
    assert "not covered" in capsys.readouterr().err
    with pytest.raises(TransferError, match="--samples"):
        TransferSettings(models=(MODEL,), samples=0)


@pytest.mark.ros
def test_one_sample_through_the_ros_loop(tmp_path, ros_env):
    """One reality sample through real node processes: the ROS return is close to the Python env's on the same sample
    (the same policy, reality and episode length; timing and the safety filter make the difference), every command
    the safety filter passed equals the ONNX policy on the joint state it was computed from, and the report says so.
    """
    s = TransferSettings(models=(MODEL,), samples=1, seed=1, out_dir=tmp_path / "t", progress=False)
    results = run_transfer(s)
    entry = results["models"][0]
    py, ros = entry["python"][0], entry["ros"][0]
    assert "error" not in ros, ros
    assert ros["steps"] == py["length"] == 500 and not ros["short"]
    assert abs(ros["return"] - py["return"]) < 0.1 * py["return"], (ros["return"], py["return"])
    assert ros["agreement_commands"] > 400 and ros["unmatched_commands"] <= 2
    assert ros["agreement_max"] <= 1e-4
    assert ros["nonfinite_commands"] == 0 and np.isfinite(ros["latency_p99_ms"])
    report = write_report(results, s.out_dir)
    summary = summarize(entry)
    assert summary["ros_minus_python"]["max_abs"] == pytest.approx(abs(ros["return"] - py["return"]))
    assert "| reality return, ROS 2 loop |" in report.read_text()
    assert (s.out_dir / "ros_vs_python.png").exists()
