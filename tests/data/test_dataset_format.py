"""Episode dataset format: env -> dataset -> load round trip, Minari compatibility, semantic checks."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

from robot_rl.data.checks import check_episode
from robot_rl.data.dataset import DatasetWriter, Episode, load_dataset, record_episode
from robot_rl.envs import make


def _collect(tmp_path, env_id="robot_rl/ArmReach-v0", n=3, steps=20):
    env = make(env_id, max_episode_steps=steps)
    eps = [record_episode(env, lambda o, r: r.uniform(-1, 1, env.action_space.shape), seed=s) for s in range(n)]
    meta = {"env_id": env_id, "control_period_s": env.unwrapped.control_dt,
            "provenance": {"controller": "random", "seed": 0}}
    with DatasetWriter(tmp_path / "ds", dataset_id="robot_rl/test-random-v0", observation_space=env.observation_space,
                       action_space=env.action_space, robot_rl_metadata=meta) as w:
        for ep in eps:
            w.add(ep)
    return env, eps


def _assert_same(a: Episode, b: Episode):
    if isinstance(a.observations, dict):
        assert a.observations.keys() == b.observations.keys()
        for k in a.observations:
            np.testing.assert_array_equal(a.observations[k], b.observations[k])
    else:
        np.testing.assert_array_equal(a.observations, b.observations)
    for key in ("actions", "rewards", "terminations", "truncations", "time_s"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    for k in a.infos:
        np.testing.assert_array_equal(a.infos[k], b.infos[k])


def test_round_trip_env_dataset_load(tmp_path):
    env, eps = _collect(tmp_path)
    ds = load_dataset(tmp_path / "ds")
    assert ds.report.ok and len(ds.episodes) == 3
    for a, b in zip(eps, ds.episodes):
        _assert_same(a, b)
    assert ds.metadata["env_id"] == "robot_rl/ArmReach-v0"
    assert ds.metadata["control_period_s"] == pytest.approx(0.02)
    assert ds.episodes[1].metadata["seed"] == 1
    assert isinstance(ds.observation_space, gym.spaces.Dict)
    # the recorded joint states rebuild the observation through the env's ObservationBuilder
    u = env.unwrapped
    ep = ds.episodes[0]
    goal = ep.observations["desired_goal"][0]
    rebuilt = u.observation_builder.build(ep.infos["joint_positions"][5], ep.infos["joint_velocities"][5], goal)
    np.testing.assert_allclose(rebuilt, ep.observations["observation"][5], atol=1e-6)


def test_a_dataset_directory_named_data_loads(tmp_path):
    """``DIR`` and ``DIR/data`` both load, also when the user named the dataset directory itself "data"."""
    from robot_rl.commands.collect import collect

    collect("robot_rl/ArmReach-v0", "random", 2, str(tmp_path / "data"), progress=False)
    assert len(load_dataset(tmp_path / "data").episodes) == 2
    assert len(load_dataset(tmp_path / "data" / "data").episodes) == 2


def test_minari_reads_the_dataset(tmp_path, monkeypatch):
    minari = pytest.importorskip("minari", reason="minari is an optional reader (pip install minari)")
    _, eps = _collect(tmp_path / "robot_rl")
    # minari.load_dataset(id) looks in $MINARI_DATASETS_PATH/<namespace>/<name>/data
    (tmp_path / "robot_rl" / "ds").rename(tmp_path / "robot_rl" / "test-random-v0")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    mds = minari.load_dataset("robot_rl/test-random-v0")
    assert mds.total_episodes == 3 and mds.total_steps == sum(len(e) for e in eps)
    got = list(mds.iterate_episodes())
    np.testing.assert_array_equal(got[2].actions, eps[2].actions)
    np.testing.assert_array_equal(got[2].observations["achieved_goal"], eps[2].observations["achieved_goal"])
    np.testing.assert_array_equal(got[2].infos["time_s"], eps[2].time_s)


def _episode(n=5):
    obs = np.zeros((n + 1, 2), np.float32)
    return Episode(obs, np.zeros((n, 1), np.float32), np.zeros(n), np.zeros(n, bool), np.r_[np.zeros(n - 1, bool), 1],
                   np.arange(n + 1) * 0.1)


SPACES = (gym.spaces.Box(-1, 1, (2,), np.float32), gym.spaces.Box(-1, 1, (1,), np.float32))


@pytest.mark.parametrize("damage, expected", [
    (lambda e: e.observations.__setitem__((2, 0), np.nan), "observations: 1 non-finite value(s), first at step 2"),
    (lambda e: e.actions.__setitem__((3, 0), 1.5), "actions: 1 value(s) outside the space, first at step 3"),
    (lambda e: e.time_s.__setitem__(4, 0.25), "time_s not strictly increasing at step 3"),
    (lambda e: setattr(e, "rewards", np.zeros(4)), "rewards: shape (4,), expected (5,)"),
    (lambda e: setattr(e, "observations", e.observations[:-1]), "observations: 5 entries, expected 6"),
    (lambda e: e.truncations.__setitem__(1, True), "termination/truncation flag before the last step (step 1)"),
    (lambda e: e.rewards.__setitem__(0, np.inf), "rewards: 1 non-finite value(s), first at step 0"),
])
def test_semantic_checks_name_the_problem(damage, expected):
    ep = _episode()
    assert check_episode(ep, *SPACES) == []
    damage(ep)
    issues = check_episode(ep, *SPACES)
    assert any(expected in i for i in issues), issues


def test_writer_refuses_bad_episode_and_loader_drops_it(tmp_path):
    with DatasetWriter(tmp_path / "d", dataset_id="x-v0", observation_space=SPACES[0], action_space=SPACES[1],
                       robot_rl_metadata={}) as w:
        w.add(_episode())
        bad = _episode()
        bad.actions[0] = 2.0
        with pytest.raises(ValueError, match="episode 1 fails the dataset checks: actions"):
            w.add(bad)
        w.add(_episode(7))
    # a value edited behind the writer's back (CRC refreshed) is still caught on load: the checks always run
    meta_path = tmp_path / "d" / "data" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    ent = meta["robot_rl"]["index"][1]["arrays"]["actions"]
    raw = np.full(ent["shape"], 3.0, dtype=ent["dtype"]).tobytes()
    h5 = tmp_path / "d" / "data" / "main_data.hdf5"
    data = bytearray(h5.read_bytes())
    data[ent["offset"]:ent["offset"] + ent["nbytes"]] = raw
    h5.write_bytes(bytes(data))
    import zlib

    ent["crc32"] = zlib.crc32(raw)
    meta_path.write_text(json.dumps(meta))
    ds = load_dataset(tmp_path / "d")
    assert len(ds.episodes) == 1 and len(ds.episodes[0]) == 5
    dropped = [e for e in ds.report.episodes if not e.ok]
    assert dropped[0].name == "episode_1" and "outside the space" in dropped[0].issues[0]


def test_dataset_id_and_existing_dir_are_refused(tmp_path):
    with pytest.raises(ValueError, match="not of the form"):
        DatasetWriter(tmp_path / "a", dataset_id="no version", observation_space=SPACES[0], action_space=SPACES[1],
                      robot_rl_metadata={})
    DatasetWriter(tmp_path / "b", dataset_id="b-v0", observation_space=SPACES[0], action_space=SPACES[1],
                  robot_rl_metadata={}).close()
    with pytest.raises(FileExistsError, match="already holds a dataset"):
        DatasetWriter(tmp_path / "b", dataset_id="b-v0", observation_space=SPACES[0], action_space=SPACES[1],
                      robot_rl_metadata={})


def test_minari_file_without_byte_index_reads_through_hdf5(tmp_path):
    """A dataset written by Minari itself has no robot_rl byte index: read via h5py, checks still run."""
    env, eps = _collect(tmp_path)
    meta_path = tmp_path / "ds" / "data" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    del meta["robot_rl"]["index"]
    meta_path.write_text(json.dumps(meta))
    ds = load_dataset(tmp_path / "ds")
    assert len(ds.episodes) == 3 and "no robot_rl byte index" in ds.report.notes[0]
    for a, b in zip(eps, ds.episodes):
        _assert_same(a, b)
    assert ds.episodes[2].metadata["seed"] == 2
