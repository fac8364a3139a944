"""robot-rl monitor: train, export and calibrate a policy's dynamics monitor (small sizes), and its refusals."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from robot_rl.commands import monitor as monitor_command
from robot_rl.core.profile import load_profile
from robot_rl.export.monitor import MONITOR_FILE, DynamicsMonitor
from robot_rl.train.monitor_fit import MonitorSettings, fit_monitor, transitions

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "cartpole_swingup_sac"


def cli(*argv: str) -> int:
    p = argparse.ArgumentParser()
    monitor_command.add_arguments(p)
    return monitor_command.run(p.parse_args(list(argv)))


def _monitor_copy(out: Path, **changes) -> Path:
    out.mkdir(parents=True)
    for f in (MODEL / "monitor").iterdir():
        (out / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((out / MONITOR_FILE).read_text())
    for key, value in changes.items():
        if value is None:
            cfg.pop(key, None)
        else:
            cfg[key] = value
    (out / MONITOR_FILE).write_text(json.dumps(cfg))
    return out


def test_fit_export_calibrate(tmp_path):
    out = tmp_path / "mon"
    meta = fit_monitor(MODEL, out, MonitorSettings(episodes=3, calibration=2, epochs=3, progress=False))
    # the episodes run under the policy's own training randomization (policy.json)
    assert meta["training"]["transitions"] == 3 * 500 and meta["randomization"] == "wide_latency"
    assert meta["threshold"] == pytest.approx(MonitorSettings().margin * meta["calibration"]["peak_max"])
    assert meta["reduce"] == "max"
    assert meta["angle_indices"] == [1]  # the hinge (unlimited); the slider is not an angle
    on_disk = json.loads((out / MONITOR_FILE).read_text())
    assert on_disk["policy"]["sha256"] == json.loads((MODEL / "policy.json").read_text())["model"]["sha256"]
    mon = DynamicsMonitor(out, load_profile("cartpole"))
    assert mon.window == 25 and mon.threshold == meta["threshold"]


def test_node_refuses_a_monitor_of_another_policy(tmp_path):
    from robot_rl.export.runtime import OnnxPolicy
    from robot_rl.nodes._common import StartupError
    from robot_rl.nodes._policy_setup import load_monitor

    profile = load_profile("cartpole")
    policy = OnnxPolicy.load(MODEL, profile)
    assert load_monitor("", profile, policy) is None
    assert load_monitor(str(MODEL / "monitor"), profile, policy) is not None
    shipped = json.loads((MODEL / "monitor" / MONITOR_FILE).read_text())["policy"]
    other = _monitor_copy(tmp_path / "other", policy={**shipped, "sha256": "0" * 64})
    with pytest.raises(StartupError, match="trained for policy 000000000000"):
        load_monitor(str(other), profile, policy)
    with pytest.raises(StartupError, match="parameter 'monitor'"):
        load_monitor(str(tmp_path / "missing"), profile, policy)


def test_reduce_max_is_not_diluted_by_quiet_dimensions(tmp_path):
    """One surprised state dimension among four: ``max`` scores it in full, ``mean`` divides it by four; a monitor.json
    written before ``reduce`` existed is read as ``mean`` (what it was calibrated with); a wrong value is refused."""
    from robot_rl.export.runtime import ArtifactError

    profile = load_profile("cartpole")
    mon_max = DynamicsMonitor(_monitor_copy(tmp_path / "a", reduce="max"), profile)
    mon_mean = DynamicsMonitor(_monitor_copy(tmp_path / "b", reduce=None), profile)
    assert mon_max.reduce == "max" and mon_mean.reduce == "mean"
    prev, cmd = np.array([0.1, np.pi, 0.0, 0.0]), np.array([0.0])
    mean, _ = mon_max.ensemble(prev.reshape(1, -1), cmd.reshape(1, -1))
    x = prev + mean[:, 0].mean(axis=0)   # the predicted next state ...
    x[2] += 0.5                          # ... but the cart 0.5 m/s faster than predicted
    s_max, s_mean = mon_max.transition_score(prev, cmd, x), mon_mean.transition_score(prev, cmd, x)
    assert s_max > 3.9 * s_mean and s_mean > 1.0
    with pytest.raises(ArtifactError, match="reduce 'median' is not one of"):
        DynamicsMonitor(_monitor_copy(tmp_path / "c", reduce="median"), profile)


def test_angle_deltas_are_unwrapped():
    ep = {"q": np.array([[0.0, 3.1], [0.0, -3.1]]), "qd": np.zeros((2, 2)), "command": np.zeros((1, 1))}
    x, _u, xn = transitions([ep], [1])
    assert xn[0, 1] - x[0, 1] == pytest.approx(2 * np.pi - 6.2)


def test_cli_refusals(tmp_path, capsys):
    assert cli(str(tmp_path)) == 2
    assert "no policy.json" in capsys.readouterr().err
    assert cli(str(MODEL), "--episodes", "1") == 2
    assert "--episodes must be >= 2" in capsys.readouterr().err
    assert cli(str(MODEL), "--margin", "0.5") == 2
    assert "--margin" in capsys.readouterr().err
