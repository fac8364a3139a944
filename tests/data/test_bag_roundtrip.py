"""Sim run -> rosbag2 (written with rosbags) -> episodes identical to the direct recording; resampling rules."""

from __future__ import annotations

import numpy as np
import pytest

from robot_rl.data.bags import ImportSettings, export_bag, import_bag, read_bag
from robot_rl.data.dataset import record_episode
from robot_rl.envs import make


@pytest.fixture(scope="module")
def arm():
    env = make("robot_rl/ArmReach-v0", max_episode_steps=30)
    eps = [record_episode(env, lambda o, r: r.uniform(-1, 1, 7), seed=s) for s in range(3)]
    return env, eps


def _same(a, b, atol=1e-6):
    assert len(a) == len(b)
    for k in a.observations:
        np.testing.assert_allclose(a.observations[k], b.observations[k], atol=atol, err_msg=k)
    np.testing.assert_allclose(a.actions, b.actions, atol=1e-6)
    np.testing.assert_allclose(a.rewards, b.rewards, atol=1e-9)
    np.testing.assert_allclose(a.time_s - a.time_s[0], b.time_s - b.time_s[0], atol=1e-6)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_bag_round_trip_equals_direct_recording(arm, tmp_path, storage):
    env, eps = arm
    export_bag(eps, tmp_path / "bag", env.unwrapped.profile, storage=storage)
    got, report = import_bag(tmp_path / "bag", env)
    assert report.ok, report.describe()
    assert len(got) == 3
    for a, b in zip(eps, got):
        _same(a, b)


def test_goal_messages_split_episodes_without_gaps(arm, tmp_path):
    env, eps = arm
    export_bag(eps, tmp_path / "bag", env.unwrapped.profile, episode_gap_s=0.02)  # back to back: only goals split
    got, _ = import_bag(tmp_path / "bag", env, ImportSettings(control_period_s=0.02, split="goal"))
    assert [len(e) for e in got] == [30, 30, 30]
    merged, _ = import_bag(tmp_path / "bag", env, ImportSettings(control_period_s=0.02, split="gap"))
    assert len(merged) == 1 and len(merged[0]) == 92  # 31 + 31 + 31 samples, one grid


def test_resampling_interpolates_states_and_holds_commands(tmp_path):
    env = make("robot_rl/CartpoleSwingup-v0", max_episode_steps=40)
    ep = record_episode(env, lambda o, r: r.uniform(-1, 1, 1), seed=3)
    export_bag([ep], tmp_path / "bag", env.unwrapped.profile)
    # resample the 50 Hz log at 100 Hz: states are linear in between, commands held for two steps
    got, report = import_bag(tmp_path / "bag", env, ImportSettings(control_period_s=0.01, max_gap_s=0.05))
    assert report.ok and len(got) == 1
    e = got[0]
    assert len(e) == 80
    np.testing.assert_allclose(e.actions[0::2], ep.actions, atol=1e-6)
    np.testing.assert_allclose(e.actions[1::2], ep.actions, atol=1e-6)
    q = ep.infos["joint_positions"]
    np.testing.assert_allclose(e.infos["joint_positions"][1::2], (q[:-1] + q[1:]) / 2, atol=1e-9)
    raw = read_bag(tmp_path / "bag")  # no goal messages for a task without goals
    assert sorted(raw.topics) == ["/forward_effort_controller/commands", "/joint_states"]
    assert [len(raw.topics[t][1]) for t in sorted(raw.topics)] == [40, 41]


def test_gap_splits_episode(tmp_path):
    env = make("robot_rl/CartpoleSwingup-v0", max_episode_steps=40)
    ep = record_episode(env, lambda o, r: r.uniform(-1, 1, 1), seed=4)
    # drop 5 joint-state samples (0.1 s) in the middle of the run
    from robot_rl.data.dataset import Episode

    keep = np.r_[0:20, 25:41]
    holey = Episode(ep.observations[keep], ep.actions[np.minimum(keep[:-1], 39)], ep.rewards[:len(keep) - 1],
                    ep.terminations[:len(keep) - 1], ep.truncations[:len(keep) - 1], ep.time_s[keep],
                    {k: v[keep] for k, v in ep.infos.items()})
    export_bag([holey], tmp_path / "bag", env.unwrapped.profile)
    got, report = import_bag(tmp_path / "bag", env, ImportSettings(control_period_s=0.02, max_gap_s=0.05))
    assert [len(e) for e in got] == [19, 15]
    np.testing.assert_allclose(got[1].time_s[0] - got[0].time_s[0], 0.5, atol=1e-9)
    bridged, _ = import_bag(tmp_path / "bag", env, ImportSettings(control_period_s=0.02, max_gap_s=0.2))
    assert [len(e) for e in bridged] == [40]
