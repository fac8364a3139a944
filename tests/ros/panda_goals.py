"""Steps the Panda ROS tests share: PoseStamped goals, and a shipped launch file run end to end with one goal."""

from __future__ import annotations

import subprocess
import sys

import numpy as np


def pose(frame: str, x: float, y: float, z: float):
    """A geometry_msgs/PoseStamped goal at ``(x, y, z)`` [m] in ``frame`` (identity orientation)."""
    from geometry_msgs.msg import PoseStamped

    msg = PoseStamped()
    msg.header.frame_id = frame
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = x, y, z
    msg.pose.orientation.w = 1.0
    return msg


def launch_with_goal(tmp_path, ros_env, probe, launch_args: list[str], node: str, goal, arrived, what: str,
                     arrive_s: float) -> tuple[str, dict]:
    """``robot-rl launch LAUNCH_ARGS --duration 25`` (bag in ``tmp_path/bag``), then ``goal`` (x, y, z in link0) on
    /goal, published until ``node`` answers with it on ``~/goal``, then wait up to ``arrive_s`` until
    ``arrived(ee)`` holds for the latest ``/sim_robot/ee_position`` xyz. The launch must end with 0.

    Returns ``(launch log, {bag topic: message count})``.
    """
    from geometry_msgs.msg import PoseStamped
    from rosbags.rosbag2 import Reader
    from std_msgs.msg import Float64MultiArray

    in_use = probe.record(Float64MultiArray, f"/{node}/goal")
    ee = probe.record(Float64MultiArray, "/sim_robot/ee_position")
    goal_pub = probe.publisher(PoseStamped, "/goal")
    bag = tmp_path / "bag"
    log = open(tmp_path / "launch.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "robot_rl.cli", "launch", *launch_args, f"bag:={bag}",
                             f"state_dir:={tmp_path / 'state'}", "--duration", "25"],
                            env=ros_env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        # (~/goal's first message, sent at start, may precede the probe's subscription: wait for what repeats)
        probe.wait_for(lambda: len(ee) > 0, 60.0, "the end-effector position")
        probe.wait_for(lambda: goal_pub.get_subscription_count() >= 2 or None, 30.0, f"/goal matched by {node} and "
                       "the recorder")
        probe.wait_for(lambda: goal_pub.publish(pose("link0", *goal))
                       or next((list(m.data) for _, m in in_use if len(m.data)), None), 5.0, "the goal accepted")
        probe.wait_for(lambda: arrived(np.array(ee[-1][1].data[1:4])), arrive_s, what)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    out = (tmp_path / "launch.log").read_text()
    for name in ("sim_robot", node, "recorder"):
        assert f"[{name}]" in out, out[-4000:]
    with Reader(bag) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
    assert counts["/goal"] >= 1 and counts["/forward_position_controller/commands"] > 100, counts
    return out, counts
