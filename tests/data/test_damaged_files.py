"""Truncated and bit-flipped datasets and bags: a report naming file, byte range, time range and what was lost,
while every intact episode still loads identical to the original (docs/reliability.md, scenario 15)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from robot_rl.data.bag_reader import walk_mcap
from robot_rl.data.bags import export_bag, import_bag
from robot_rl.data.dataset import DatasetWriter, load_dataset, record_episode
from robot_rl.envs import make


@pytest.fixture(scope="module")
def cartpole_episodes():
    env = make("robot_rl/CartpoleSwingup-v0", max_episode_steps=250)
    eps = [record_episode(env, lambda o, r: r.uniform(-1, 1, 1), seed=s) for s in range(4)]
    return env, eps


def _write(path, env, eps):
    with DatasetWriter(path, dataset_id="robot_rl/damage-v0", observation_space=env.observation_space,
                       action_space=env.action_space, robot_rl_metadata={"env_id": "robot_rl/CartpoleSwingup-v0"}) as w:
        for e in eps:
            w.add(e)
    meta = json.loads((path / "data" / "metadata.json").read_text())
    return path / "data" / "main_data.hdf5", meta["robot_rl"]["index"]


def test_bit_flip_in_dataset_drops_only_that_episode(tmp_path, cartpole_episodes):
    env, eps = cartpole_episodes
    h5, index = _write(tmp_path / "d", env, eps)
    off = index[2]["arrays"]["observations"]["offset"] + 100
    data = bytearray(h5.read_bytes())
    data[off] ^= 0x08
    h5.write_bytes(bytes(data))
    ds = load_dataset(tmp_path / "d")
    assert [e.metadata["seed"] for e in ds.episodes] == [0, 1, 3]
    np.testing.assert_array_equal(ds.episodes[2].observations, eps[3].observations)
    (dmg,) = ds.report.damage
    start, end = dmg.byte_range
    assert start <= off < end
    assert "observations: CRC-32 mismatch" in dmg.what and "episode_2 (250 steps)" in dmg.lost
    text = ds.report.describe()
    assert str(h5) in text and f"bytes [{start}, {end})" in text and "t=[0.000000, 5.000000] s" in text


def test_truncated_dataset_keeps_the_episodes_before_the_cut(tmp_path, cartpole_episodes):
    env, eps = cartpole_episodes
    h5, index = _write(tmp_path / "d", env, eps)
    cut = index[2]["arrays"]["actions"]["offset"] + 10
    data = h5.read_bytes()
    h5.write_bytes(data[:cut])
    ds = load_dataset(tmp_path / "d")
    assert len(ds.episodes) == 2
    for a, b in zip(eps[:2], ds.episodes):
        np.testing.assert_array_equal(a.observations, b.observations)
        np.testing.assert_array_equal(a.actions, b.actions)
    lost = [d.lost for d in ds.report.damage]
    assert lost == ["episode_2 (250 steps)", "episode_3 (250 steps)"]
    assert "beyond the end of the file" in ds.report.damage[0].what and f"({cut} B)" in ds.report.damage[0].what


def test_damaged_metadata_json_falls_back_to_the_hdf5_copy(tmp_path, cartpole_episodes):
    env, eps = cartpole_episodes
    _write(tmp_path / "d", env, eps[:2])
    (tmp_path / "d" / "data" / "metadata.json").write_text('{"dataset_id": "robot_rl/dam')
    ds = load_dataset(tmp_path / "d")
    assert len(ds.episodes) == 2 and "metadata.json unreadable" in ds.report.notes[0]


@pytest.fixture()
def bag(tmp_path, cartpole_episodes):
    env, eps = cartpole_episodes
    export_bag(eps, tmp_path / "bag", env.unwrapped.profile)
    path = tmp_path / "bag" / "bag.mcap"
    clean, _ = import_bag(tmp_path / "bag", env)
    assert len(clean) == 4
    return env, eps, path, clean


def _chunks(path):
    """(offset, end) of every chunk record, from the file's own framing."""
    data = path.read_bytes()
    out, pos = [], 8
    while pos + 9 <= len(data):
        op, n = data[pos], int.from_bytes(data[pos + 1:pos + 9], "little")
        if op == 0x06:
            out.append((pos, pos + 9 + n))
        if op == 0x02:
            break
        pos += 9 + n
    return out


def test_bit_flipped_bag_chunk_is_reported_and_other_episodes_load(bag):
    env, eps, path, clean = bag
    chunks = _chunks(path)
    start, end = chunks[len(chunks) // 2]
    data = bytearray(path.read_bytes())
    data[(start + end) // 2] ^= 0x40
    path.write_bytes(bytes(data))
    got, report = import_bag(path.parent, env)
    (dmg,) = report.damage
    assert dmg.byte_range == (start, end) and "CRC-32 mismatch" in dmg.what
    assert "message(s) on /joint_states" in dmg.lost and "/forward_effort_controller/commands" in dmg.lost
    lo, hi = dmg.time_range_s
    # every episode clear of the damaged time range loads exactly as without damage
    intact = [c for c in clean if c.time_s[-1] < lo - 0.06 or c.time_s[0] > hi + 0.06]
    assert len(got) == len(intact) >= 2
    for a, b in zip(intact, got):
        np.testing.assert_array_equal(a.observations, b.observations)
        np.testing.assert_array_equal(a.actions, b.actions)
    dropped = [e for e in report.episodes if not e.ok]
    assert dropped and all("overlaps damaged range" in e.issues[0] for e in dropped)
    assert f"bytes [{start}, {end})" in report.describe()


def test_truncated_bag_keeps_intact_chunks(bag):
    env, eps, path, clean = bag
    chunks = _chunks(path)
    cut = (chunks[-2][0] + chunks[-2][1]) // 2  # inside the second-to-last chunk
    path.write_bytes(path.read_bytes()[:cut])
    got, report = import_bag(path.parent, env)
    (dmg,) = report.damage
    assert dmg.byte_range == (chunks[-2][0], cut) and "cut off at the end of the file" in dmg.what
    assert "file truncated" in dmg.lost and dmg.time_range_s is not None
    assert len(got) >= 2
    for a, b in zip(clean, got):
        np.testing.assert_array_equal(a.observations, b.observations)


def test_damaged_chunk_length_resyncs_to_the_next_chunk(bag):
    env, eps, path, clean = bag
    chunks = _chunks(path)
    start = chunks[1][0]
    data = bytearray(path.read_bytes())
    data[start + 5] ^= 0x10  # a bit in the chunk's length field: framing lost until the next chunk
    path.write_bytes(bytes(data))
    scan = walk_mcap(path)
    assert scan.damage and scan.damage[0].byte_range[0] == start
    assert scan.damage[0].byte_range[1] >= chunks[2][0] - 100
    got, _ = import_bag(path.parent, env)
    assert len(got) >= 2


def test_cli_prints_a_report_not_a_traceback(bag, tmp_path):
    env, eps, path, clean = bag
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    out = tmp_path / "imported"
    proc = subprocess.run([sys.executable, "-m", "robot_rl.cli", "replay", str(path.parent), "--env",
                           "robot_rl/CartpoleSwingup-v0", "--import-to", str(out)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "file truncated" in proc.stdout and str(path) in proc.stdout
    assert len(load_dataset(out).episodes) >= 1
    shutil.rmtree(out)


def test_bag_of_a_killed_writer_reports_the_unwritten_tail(bag):
    env, eps, path, clean = bag
    data = path.read_bytes()
    chunks = _chunks(path)
    # a killed writer leaves the complete chunks (and their message indexes) but no data-end, summary or footer
    pos = chunks[-2][1]
    while data[pos] == 0x07:
        pos += 9 + int.from_bytes(data[pos + 1:pos + 9], "little")
    path.write_bytes(data[:pos])
    got, report = import_bag(path.parent, env)
    (dmg,) = report.damage
    assert "did not close the file" in dmg.what and dmg.byte_range == (pos, pos)
    assert dmg.time_range_s is not None and len(got) == 3  # the episode running when the writer died is dropped
    for a, b in zip(clean, got):
        np.testing.assert_array_equal(a.actions, b.actions)
