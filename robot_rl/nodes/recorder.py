"""recorder: write the run as a rosbag2 bag (MCAP storage) with the ``rosbags`` library, no ``ros2 bag`` needed.

Subscribes with ``raw=True`` so messages are stored as the CDR bytes that arrived (exactly what ``ros2 bag record``
stores), stamped with the receive time [ns, ROS clock]. Chunks are small and carry CRC-32s
(``robot_rl.data.bags.CrcMcapWriter``) so ``robot-rl replay`` can report exactly what a crash cut off. Default
topics come from the robot profile (joint states, commands, the goal in the profile's ``goal_type``, ``/diagnostics``;
the IMU and ``/cmd_vel`` when the profile has an ``imu_site``, i.e. a legged robot) plus the nodes' timing, reward,
base-state, velocity-command, goal-in-use and end-effector topics; ``extra_topics`` adds ``"/topic:pkg/msg/Type"``
entries. SIGINT / SIGTERM close the bag cleanly (MCAP
summary written).

Run: ``python -m robot_rl.nodes.recorder --ros-args -p output:=runs/bags/run1``.
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path
from types import SimpleNamespace

from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy

from robot_rl.nodes._common import ParamReader, StartupError, run_node

NAME = "recorder"

DEFAULT_EXTRA = (
    "/policy_node/timing:std_msgs/msg/Float64MultiArray",
    "/mpc_node/timing:std_msgs/msg/Float64MultiArray",
    "/sim_robot/reward:std_msgs/msg/Float64MultiArray",
    "/sim_robot/applied_command:std_msgs/msg/Float64MultiArray",
    "/sim_robot/base_state:std_msgs/msg/Float64MultiArray",
    "/policy_node/velocity_command:std_msgs/msg/Float64MultiArray",
    "/policy_node/goal:std_msgs/msg/Float64MultiArray",
    "/sim_robot/ee_position:std_msgs/msg/Float64MultiArray",
)


def topic_table(profile, extra: list[str]) -> dict[str, str]:
    """Topic -> message type name (``pkg/msg/Type``) to record."""
    t = profile.topics
    table = {
        t.joint_states: "sensor_msgs/msg/JointState",
        t.commands: "std_msgs/msg/Float64MultiArray",
        t.goal: "geometry_msgs/msg/PoseStamped" if t.goal_type == "pose" else "std_msgs/msg/Float64MultiArray",
        t.diagnostics: "diagnostic_msgs/msg/DiagnosticArray",
    }
    if profile.imu_site:  # a legged robot: what its policy reads besides the joints
        table[t.imu] = "sensor_msgs/msg/Imu"
        table[t.cmd_vel] = "geometry_msgs/msg/Twist"
    for i, item in enumerate(extra):
        topic, sep, mtype = item.rpartition(":")
        if not sep or not topic.startswith("/") or mtype.count("/") != 2:
            raise StartupError(f"parameter 'extra_topics'[{i}]: expected '/topic:pkg/msg/Type', got {item!r}")
        table[topic] = mtype
    return table


def _msg_class(mtype: str):
    pkg, kind, name = mtype.split("/")
    try:
        return getattr(importlib.import_module(f"{pkg}.{kind}"), name)
    except (ImportError, AttributeError):
        raise StartupError(f"message type {mtype!r} is not installed") from None


def node_parameters(p: ParamReader) -> SimpleNamespace:
    """Declare every parameter of the recorder and return their values (``--help`` lists them from here: no bag is
    created and nothing is loaded here).
    """
    return SimpleNamespace(
        robot=p.str("robot", "cartpole", "robot profile name (topic names come from it)"),
        output=p.str("output", "auto", "bag directory to create (must not exist); auto (or empty): "
                     "runs/bags/<date-time> in the working directory"),
        extra_topics=p.str("extra_topics", ",".join(DEFAULT_EXTRA),
                           "comma-separated '/topic:pkg/msg/Type' entries recorded besides the profile's topics"),
    )


class RecorderNode(Node):
    def __init__(self):
        super().__init__(NAME)
        a = node_parameters(ParamReader(self))
        robot, output, extra = a.robot, a.output, a.extra_topics
        if output in ("", "auto"):
            output = f"runs/bags/{time.strftime('%Y%m%d-%H%M%S')}"
        from rosbags.rosbag2 import StoragePlugin, Writer
        from rosbags.typesys import Stores, get_typestore

        from robot_rl.core.config import ConfigError
        from robot_rl.core.profile import load_profile

        try:
            profile = load_profile(robot)
        except (ConfigError, FileNotFoundError) as exc:
            raise StartupError(f"parameter 'robot': {exc}") from None
        table = topic_table(profile, [e.strip() for e in extra.split(",") if e.strip()])
        out = Path(output)
        if out.exists():
            raise StartupError(f"parameter 'output': {out} already exists (rosbag2 bags are never overwritten)")
        out.parent.mkdir(parents=True, exist_ok=True)
        typestore = get_typestore(Stores.ROS2_KILTED)
        self.writer = Writer(out, version=9, storage_plugin=StoragePlugin.MCAP)
        # Small chunks with CRC-32 (robot_rl.data.bags): a bag cut by a crash loses only its last chunk and replay
        # can tell damaged ranges from intact ones (docs/reliability.md, scenario 15).
        from robot_rl.data.bags import CrcMcapWriter

        self.writer.STORAGE_PLUGINS = {**Writer.STORAGE_PLUGINS, StoragePlugin.MCAP: CrcMcapWriter}
        self.writer.open()
        self.output = out
        self.counts: dict[str, int] = {}
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        for topic, mtype in table.items():
            cls = _msg_class(mtype)
            conn = self.writer.add_connection(topic, mtype, typestore=typestore)
            self.counts[topic] = 0
            self.create_subscription(cls, topic, self._writer_cb(topic, conn), qos, raw=True)
        self._closed = False
        self.get_logger().info(f"recording {sorted(table)} to {out} (MCAP)")

    def _writer_cb(self, topic, conn):
        def cb(data: bytes) -> None:
            self.writer.write(conn, self.get_clock().now().nanoseconds, data)
            self.counts[topic] += 1

        return cb

    def on_shutdown(self) -> None:
        if not self._closed:
            self._closed = True
            self.writer.close()
            self.get_logger().info(f"closed {self.output}: messages per topic {self.counts}")

    fail_safe = on_shutdown


def main(argv=None) -> int:
    return run_node(NAME, RecorderNode, argv, parameters=node_parameters)


if __name__ == "__main__":
    sys.exit(main())
