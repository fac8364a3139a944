"""``robot-rl demo --robot go2`` in reduced form: a short /cmd_vel sequence, no video; every artifact and sane numbers.

Real parts throughout: sim_robot (a held-out Go2 reality sample), policy_node (models/go2_joystick_ppo on
onnxruntime), cmd_vel_source and the recorder as separate processes over DDS on loopback; the bag's import, action
agreement, the legged gap report and the tracking table.
"""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.ros]


def test_reduced_go2_demo_produces_every_artifact(tmp_path, ros_env):
    from robot_rl.cli import main

    out = tmp_path / "demo"
    rc = main(["demo", "--robot", "go2", "--out", str(out), "--no-video", "--reality-seed", "1",
               "--sequence", "0.5 0 0 4; 0 0 0 1.5"])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert not summary["fell"] and summary["nonfinite_commands"] == 0
    assert summary["agreement_within_0.01"] >= 0.9, summary["agreement_within_0.01"]
    assert 35.0 < summary["command_rate_hz"] < 65.0 and 0.0 < summary["latency_p50_ms"] < 20.0, summary
    walk = [g for g in summary["segments"] if g["command"] == [0.5, 0.0, 0.0]]
    assert walk and walk[0]["vx_mean"] > 0.3, summary["segments"]  # it walks (the ROS test checks distance)
    assert summary["distance_m"] > 1.0
    report = (out / "report.md").read_text()
    assert "| 0.5 0 0 |" in report and (out / "tracking.png").stat().st_size > 0
    assert "Sim-to-real gap (legged)" in (out / "replay" / "gap_report.md").read_text()
    assert (out / "replay" / "agreement.md").exists()


def test_a_bad_sequence_is_refused_before_anything_starts(tmp_path, capsys):
    from robot_rl.cli import main

    assert main(["demo", "--robot", "go2", "--out", str(tmp_path / "d"), "--sequence", "0.5 0 fast 4"]) == 2
    assert "segment 0 '0.5 0 fast 4': expected 'vx vy yaw_rate seconds'" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
