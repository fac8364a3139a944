"""recorder: SIGTERM closes the MCAP bag cleanly (summary written, every message readable, CRC-checked chunks)."""

from __future__ import annotations

import signal
import time

import pytest

pytestmark = pytest.mark.ros


def test_sigterm_closes_a_readable_bag(procs, probe, tmp_path):
    from rosbags.rosbag2 import Reader
    from sensor_msgs.msg import JointState

    from robot_rl.data.bag_reader import walk_mcap

    states = probe.record(JointState, "/joint_states")
    bag = tmp_path / "bag"
    procs.node("recorder", params={"robot": "cartpole", "output": str(bag)})
    procs.node("sim_robot", params={"robot": "cartpole"})
    procs.wait_log("recorder", "recording [", 30.0)
    start = len(states)
    probe.wait_for(lambda: len(states) > start + 100, 20.0, "joint states while recording")
    time.sleep(0.5)
    assert procs.stop("recorder", sig=signal.SIGTERM) == 0, procs.log("recorder")
    with Reader(bag) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
        n = sum(1 for _ in reader.messages())
    assert counts["/joint_states"] > 50 and n == sum(counts.values()), counts
    raw = walk_mcap(next(bag.glob("*.mcap")))
    assert not raw.damage and len(raw.topics["/joint_states"][1]) == counts["/joint_states"]
    assert "closed" in procs.log("recorder")
