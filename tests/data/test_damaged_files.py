"""Truncated and bit-flipped datasets and bags: a report naming file, byte range, time range and what was lost,
while every intact episode still loads identical to the original (docs/reliability.md, scenario 15)."""

from __future__ import annotations

import json
import shutil
import struct
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


def _part_of(part, clean, atol=1e-6):
    """``part`` equals steps ``[k0, k0 + len(part))`` of the clean episode it starts in (a truncated episode)."""
    (whole,) = [c for c in clean if c.time_s[0] - 1e-6 <= part.time_s[0] <= c.time_s[-1]]
    k0 = int(np.argmin(np.abs(whole.time_s - part.time_s[0])))
    n = len(part)
    assert k0 + n <= len(whole)
    np.testing.assert_allclose(part.observations, whole.observations[k0:k0 + n + 1], atol=atol)
    np.testing.assert_allclose(part.actions, whole.actions[k0:k0 + n], atol=atol)
    return whole, k0


def test_bit_flipped_bag_chunk_loses_only_the_records_that_do_not_frame(bag):
    env, eps, path, clean = bag
    chunks = _chunks(path)
    start, end = chunks[len(chunks) // 2]
    flip = (start + end) // 2
    data = bytearray(path.read_bytes())
    data[flip] ^= 0x40
    path.write_bytes(bytes(data))
    got, report = import_bag(path.parent, env)
    (dmg,) = report.damage
    lo_b, hi_b = dmg.byte_range
    assert start < lo_b <= flip < hi_b <= end and hi_b - lo_b < 400, dmg.byte_range  # a record or two, not the chunk
    assert "CRC-32 mismatch" in dmg.what and "do not frame" in dmg.what
    assert 1 <= sum(dmg.lost_messages.values()) <= 4 and "/joint_states" in dmg.lost_messages
    lo, hi = dmg.time_range_s
    assert hi - lo <= 0.04  # the lost messages' own log times, from the chunk's message index
    # every episode clear of the damaged time range loads exactly as without damage; the one it hits loads as two
    # truncated parts equal to the clean episode before and after the lost messages
    intact = [c for c in clean if c.time_s[-1] < lo or c.time_s[0] > hi]
    assert len(intact) == 3 and len(got) == 5
    for ep in got:
        whole, _ = _part_of(ep, clean)
        assert not (ep.time_s[0] <= lo <= ep.time_s[-1]) and not (ep.time_s[0] <= hi <= ep.time_s[-1])
        if any(whole is c for c in intact):
            np.testing.assert_array_equal(ep.observations, whole.observations)
    cut = [e for e in report.episodes if e.issues]
    assert [e.ok for e in cut] == [True, True] and "truncated: ends at damaged range" in cut[0].issues[0]
    assert "truncated: starts after damaged range" in cut[1].issues[0]
    assert sum(len(e) for e in got) >= sum(len(c) for c in clean) - 3
    assert f"bytes [{lo_b}, {hi_b})" in report.describe() and "TRUNCATED" in report.describe()


def test_crc_mismatch_inside_a_value_drops_the_chunk(bag):
    """A flipped bit inside a float that frames and decodes cannot be located: the whole chunk is lost, its episode
    parts on either side load truncated."""
    env, eps, path, clean = bag
    chunks = _chunks(path)
    start, end = chunks[len(chunks) // 2]
    data = bytearray(path.read_bytes())
    # a joint position value in the chunk, as the float64 the bag stores
    hits = [data.find(struct.pack("<d", v), start, end) for ep in eps for v in ep.infos["joint_positions"][:, 0]]
    off = next(h for h in hits if start < h < end)
    data[off] ^= 0x01  # lowest mantissa bit
    path.write_bytes(bytes(data))
    got, report = import_bag(path.parent, env)
    (dmg,) = report.damage
    assert dmg.byte_range == (start, end) and "cannot be located" in dmg.what
    lo, hi = dmg.time_range_s
    assert sum(dmg.lost_messages.values()) > 100
    for ep in got:
        _part_of(ep, clean)
        assert ep.time_s[-1] <= lo or ep.time_s[0] >= hi  # a step may end at a state logged with a lost command


def test_truncated_bag_keeps_intact_chunks_and_the_records_before_the_cut(bag):
    env, eps, path, clean = bag
    chunks = _chunks(path)
    cut = (chunks[-2][0] + chunks[-2][1]) // 2  # inside the second-to-last chunk
    path.write_bytes(path.read_bytes()[:cut])
    got, report = import_bag(path.parent, env)
    (dmg,) = report.damage
    assert chunks[-2][0] < dmg.byte_range[0] < cut == dmg.byte_range[1] and "file truncated" in dmg.what
    lo, _hi = dmg.time_range_s
    assert len(got) >= 3
    for ep in got:
        _part_of(ep, clean)
        assert ep.time_s[-1] <= lo
    # the records of the cut chunk before the cut are kept: the last episode reaches within 2 steps of the cut
    assert got[-1].time_s[-1] >= lo - 0.04 and "truncated: ends at damaged range" in report.episodes[-1].issues[0]


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
    # the episode running when the writer died loads up to its last written step, reported as truncated
    assert dmg.time_range_s is not None and len(got) == 4 and len(got[3]) < len(clean[3])
    for a, b in zip(clean[:3], got):
        np.testing.assert_array_equal(a.actions, b.actions)
    _part_of(got[3], clean)
    assert report.episodes[3].ok and "truncated: ends at damaged range" in report.episodes[3].issues[0]


# --------------------------------------------------------------------------- bags of plain writers (one chunk, no CRC)


def _plain_bag(path, env, seconds=20.0, period_ns=20_000_000, bad_command_at=None):
    """A 50 Hz run written by rosbags' own MCAP writer, as plain writers make them: one uncompressed chunk, no CRC.
    Commands are logged 1 ms after the joint state they answer; ``bad_command_at`` (a step) gets a CDR payload cut
    by 4 bytes (it frames, but does not decode)."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    from robot_rl.data.bags import F64_ARRAY, JOINT_STATE, TYPESTORE, _f64_array, _stamp

    profile = env.unwrapped.profile
    JointState = TYPESTORE.types[JOINT_STATE]
    Header = TYPESTORE.types["std_msgs/msg/Header"]
    t0 = 1_700_000_000 * 10**9
    writer = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
    with writer:
        c_js = writer.add_connection(profile.topics.joint_states, JOINT_STATE, typestore=TYPESTORE)
        c_cmd = writer.add_connection(profile.topics.commands, F64_ARRAY, typestore=TYPESTORE)
        for k in range(int(round(seconds * 1e9 / period_ns)) + 1):
            t = t0 + k * period_ns
            x = 0.1 * np.sin(0.01 * k)
            js = JointState(header=Header(stamp=_stamp(t), frame_id=""), name=list(profile.joint_names)[::-1],
                            position=np.array([3.0 + x, x]), velocity=np.array([0.05, -0.05]), effort=np.zeros(0))
            writer.write(c_js, t, TYPESTORE.serialize_cdr(js, JOINT_STATE))
            cmd = TYPESTORE.serialize_cdr(_f64_array([0.5 * np.cos(0.02 * k)]), F64_ARRAY)
            writer.write(c_cmd, t + 1_000_000, cmd[:-4] if k == bad_command_at else cmd)
    mcap = path / f"{path.name}.mcap"
    data = mcap.read_bytes()
    (chunk,) = _chunks(mcap)
    assert data[chunk[0] + 9 + 24:chunk[0] + 9 + 28] == b"\0\0\0\0"  # rosbags stores no chunk CRC
    return mcap, chunk


@pytest.fixture(scope="module")
def cartpole():
    return make("robot_rl/CartpoleSwingup-v0")


def test_plain_bag_cut_at_half_keeps_the_first_half(tmp_path, cartpole):
    mcap, chunk = _plain_bag(tmp_path / "bag", cartpole)
    (clean,), _ = import_bag(tmp_path / "bag", cartpole)
    data = mcap.read_bytes()
    cut = len(data) // 2
    mcap.write_bytes(data[:cut])
    raw = walk_mcap(mcap)
    kept = max(t for _mt, items in raw.topics.values() for t, _ in items)
    (dmg,) = raw.damage
    assert dmg.byte_range[1] == cut and chunk[0] < dmg.byte_range[0] < cut and "file truncated" in dmg.what
    lo, hi = dmg.time_range_ns
    assert kept <= lo <= kept + 20_000_000 and hi == 1_700_000_020_001_000_000  # to the chunk's end time
    got, report = import_bag(tmp_path / "bag", cartpole)
    assert len(got) == 1 and got[0].time_s[-1] - got[0].time_s[0] >= 8.0
    _part_of(got[0], [clean])
    assert got[0].time_s[-1] <= lo / 1e9 and "truncated: ends at damaged range" in report.episodes[0].issues[0]


@pytest.mark.parametrize("shift", [0, 37, 71])
def test_plain_bag_with_100_flipped_bytes_keeps_the_rest(tmp_path, cartpole, shift):
    mcap, chunk = _plain_bag(tmp_path / "bag", cartpole)
    (clean,), _ = import_bag(tmp_path / "bag", cartpole)
    data = bytearray(mcap.read_bytes())
    flip = (chunk[0] + chunk[1]) // 2 + shift
    for i in range(flip, flip + 100):
        data[i] ^= 0xFF
    mcap.write_bytes(bytes(data))
    raw = walk_mcap(mcap)
    n_kept = sum(len(items) for _mt, items in raw.topics.values())
    assert n_kept >= 0.9 * 2002, n_kept
    (dmg,) = raw.damage
    assert dmg.byte_range[0] <= flip and flip + 100 <= dmg.byte_range[1] and "do not frame" in dmg.what
    assert n_kept + sum(dmg.lost_messages.values()) == 2002  # lost counts from the message index
    lo, hi = dmg.time_range_s
    got, report = import_bag(tmp_path / "bag", cartpole)
    assert len(got) == 2 and sum(len(e) for e in got) >= 0.9 * len(clean)
    for ep in got:
        _part_of(ep, [clean])
        assert ep.time_s[-1] <= lo or ep.time_s[0] >= hi
    assert all(e.ok and e.issues for e in report.episodes)  # both parts kept and reported truncated


def test_message_that_does_not_decode_is_dropped_counted_and_splits(tmp_path, cartpole):
    _plain_bag(tmp_path / "bag", cartpole, seconds=4.0, bad_command_at=100)
    got, report = import_bag(tmp_path / "bag", cartpole)
    assert "/forward_effort_controller/commands: 1 message(s) could not be decoded" in " ".join(report.notes)
    # step 100 would hold command 99 in place of the lost one: it is left out, the run loads as two episodes
    assert [len(e) for e in got] == [100, 99]
    assert "undecodable message at t=1700000002.001000 s" in report.episodes[0].issues[0]


@pytest.mark.parametrize("damage", ["cut", "flip"])
def test_damaged_sqlite3_bag_keeps_the_intact_rows(tmp_path, cartpole_episodes, damage):
    env, eps = cartpole_episodes
    export_bag(eps, tmp_path / "bag", env.unwrapped.profile, storage="sqlite3")
    clean, _ = import_bag(tmp_path / "bag", env)
    db = tmp_path / "bag" / "bag.db3"
    data = bytearray(db.read_bytes())
    if damage == "cut":
        data = data[:len(data) // 2]
    else:
        for i in range(len(data) // 2, len(data) // 2 + 100):
            data[i] ^= 0xFF
    db.write_bytes(bytes(data))
    got, report = import_bag(tmp_path / "bag", env)
    (dmg,) = report.damage
    assert "unreadable" in dmg.what and dmg.time_range_s is not None and str(db) in report.describe()
    lo, hi = dmg.time_range_s
    kept = sum(len(e) for e in got)
    assert kept >= (0.3 if damage == "cut" else 0.85) * sum(len(c) for c in clean) and len(got) >= 2
    for ep in got:
        _part_of(ep, clean)
        assert ep.time_s[-1] <= lo or ep.time_s[0] >= hi
