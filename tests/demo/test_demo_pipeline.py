"""The demo pipeline in reduced form: tiny training budget, short closed loop; every stage's artifact and sane numbers.

Real parts throughout: SAC training, ONNX export with parity, sim_robot + policy_node + recorder as separate
processes over DDS on loopback, bag replay and the gap report.
"""

from __future__ import annotations

import json
import math

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.ros]


def test_reduced_demo_produces_every_artifact(tmp_path, ros_env, monkeypatch):
    from robot_rl.cli import main

    out = tmp_path / "demo"
    rc = main(["demo", "--out", str(out), "--duration", "9",
               "--set", "train.total_steps=1200", "--set", "train.eval_every_steps=600",
               "--set", "train.checkpoint_every_steps=600", "--set", "train.eval_episodes=2",
               "--set", "sac.learning_starts=300", "--set", "train.progress=false"])
    assert rc == 0
    # 1. training run
    run = json.loads((out / "train" / "run.json").read_text())
    assert run["status"] == "complete" and run["env_steps"] == 1200
    assert (out / "train" / "learning_curve.png").stat().st_size > 0
    # 2. export with its contract
    sidecar = json.loads((out / "model" / "policy.json").read_text())
    assert (out / "model" / "policy.onnx").is_file()
    assert sidecar["robot"]["profile"] == "cartpole" and sidecar["env_id"] == "robot_rl/CartpoleSwingupRail-v0"
    assert sidecar["checks"]
    # 3. deployment bag and 4. replay reports
    assert any((out / "bag").glob("*.mcap"))
    assert (out / "replay" / "gap_report.md").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["commands"] > 100  # >= 2 s of commands at 50 Hz inside the 9 s window
    assert summary["nonfinite_commands"] == 0
    assert 0.0 < summary["latency_p50_ms"] < 50.0, summary["latency_p50_ms"]
    # the default trigger (read back from policy_node's diagnostics): 100 Hz joint states decimated to 50 Hz commands
    assert summary["trigger"] == "sensor" and 35.0 < summary["command_rate_hz"] < 65.0, summary
    assert summary["steps"] > 50
    assert math.isfinite(summary["deployed_return"]) and 0.0 <= summary["deployed_return"] <= 500.0
    # The ONNX policy on the logged observations reproduces the logged commands (safety filter passes them through
    # unchanged in normal operation; sensor noise and timing make them differ slightly at most).
    assert summary["agreement_max"] < 1.0, summary["agreement_max"]
    for joint, rmse in summary["gap_rmse_q"].items():
        assert math.isfinite(rmse) and rmse < 0.2, (joint, rmse)
    # 5. report with plots
    report = (out / "report.md").read_text()
    assert "command publish p50 / p99 / max [ms], trigger sensor |" in report
    for png in ("deployed_trajectories.png", "latency_hist.png"):
        assert png in report and (out / png).stat().st_size > 0


def test_a_second_demo_run_keeps_the_previous_output(tmp_path):
    """Re-running the demo into the same directory moves the last output aside instead of failing on it."""
    from robot_rl.commands.demo import keep_previous

    out = tmp_path / "demo"
    assert keep_previous(out) is None  # nothing there yet
    (out / "bag").mkdir(parents=True)
    (out / "report.md").write_text("first")
    assert keep_previous(out) == tmp_path / "demo.previous"
    assert not out.exists() and (tmp_path / "demo.previous" / "report.md").read_text() == "first"
    (out / "train").mkdir(parents=True)
    (out / "report.md").write_text("second")
    keep_previous(out)  # the older .previous is replaced by the newer one
    assert (tmp_path / "demo.previous" / "report.md").read_text() == "second"
    assert not (tmp_path / "demo.previous" / "bag").exists()
