"""cmd_vel_source: a scripted velocity command for legged policies (a stand-in for a joystick or a navigation stack).

Publishes geometry_msgs/Twist (parameters ``linear_x``, ``linear_y`` [m/s], ``angular_z`` [rad/s]) on the robot
profile's ``cmd_vel`` topic every ``period_s`` of steady time, from ``start_after_s`` after start for
``duration_s`` (0: until stopped); or a ``sequence`` of segments ``"vx vy yaw_rate seconds; ..."`` played once from
``start_after_s`` (e.g. ``"0.5 0 0 4; 0.3 0 0.5 3"``: 4 s straight at 0.5 m/s, then 3 s turning). When it stops
publishing, the policy node's ``cmd_vel_timeout_s`` makes the robot stand, as when a real joystick disconnects.

Run: ``python -m robot_rl.nodes.cmd_vel_source --ros-args -p robot:=go2 -p linear_x:=0.5``.
"""

from __future__ import annotations

import math
import sys
import time
from types import SimpleNamespace

from geometry_msgs.msg import Twist
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy

from robot_rl.deploy.legged_loop import parse_sequence
from robot_rl.nodes._common import ParamReader, StartupError, run_node, steady_clock

NAME = "cmd_vel_source"


def node_parameters(p: ParamReader) -> SimpleNamespace:
    """Declare every parameter of cmd_vel_source and return their values (``--help`` lists them from here)."""
    return SimpleNamespace(
        robot=p.str("robot", "go2", "robot profile name (the cmd_vel topic comes from it)"),
        linear_x=p.float("linear_x", 0.5, "commanded forward velocity [m/s]"),
        linear_y=p.float("linear_y", 0.0, "commanded sideways velocity (left) [m/s]"),
        angular_z=p.float("angular_z", 0.0, "commanded yaw rate (counter-clockwise) [rad/s]"),
        period_s=p.float("period_s", 0.1, "publication period [s] (steady clock)", min_value=1e-3),
        start_after_s=p.float("start_after_s", 0.0, "publish from this long after start [s]", min_value=0.0),
        duration_s=p.float("duration_s", 0.0, "publish for this long [s]; 0: until stopped", min_value=0.0),
        sequence=p.str("sequence", "", "segments 'vx vy yaw_rate seconds; ...' played once from start_after_s "
                       "(replaces linear_x, linear_y, angular_z and duration_s)"),
    )


class CmdVelSourceNode(Node):
    def __init__(self):
        super().__init__(NAME)
        a = node_parameters(ParamReader(self))
        from robot_rl.core.config import ConfigError
        from robot_rl.core.profile import load_profile

        try:
            profile = load_profile(a.robot)
        except (ConfigError, FileNotFoundError) as exc:
            raise StartupError(f"parameter 'robot': cannot load robot profile {a.robot!r}: {exc}") from None
        self.topic = profile.topics.cmd_vel
        try:
            segments = parse_sequence(a.sequence)
        except ValueError as exc:
            raise StartupError(str(exc)) from None
        if not segments:
            segments = [(a.linear_x, a.linear_y, a.angular_z, a.duration_s or math.inf)]
        self.start_s = time.monotonic() + a.start_after_s
        self.segments = []  # (end time [steady s], Twist)
        end = self.start_s
        for vx, vy, wz, seconds in segments:
            msg = Twist()
            msg.linear.x, msg.linear.y, msg.angular.z = vx, vy, wz
            end += seconds
            self.segments.append((end, msg))
        self.end_s = end
        self.sent = 0
        self.pub = self.create_publisher(Twist, self.topic, QoSProfile(depth=10,
                                                                       reliability=ReliabilityPolicy.RELIABLE))
        self.create_timer(a.period_s, self._tick, clock=steady_clock())
        plan = "; ".join(f"{m.linear.x:g} {m.linear.y:g} {m.angular.z:g} until +{e - self.start_s:g} s"
                         for e, m in self.segments)
        self.get_logger().info(f"cmd_vel on {self.topic} every {a.period_s} s from {a.start_after_s} s: {plan}")

    def _tick(self) -> None:
        now = time.monotonic()
        if self.start_s <= now < self.end_s:
            self.pub.publish(next(m for end, m in self.segments if now < end))
            self.sent += 1

    def on_shutdown(self) -> None:
        self.get_logger().info(f"published {self.sent} cmd_vel messages")


def main(argv=None) -> int:
    return run_node(NAME, CmdVelSourceNode, argv, parameters=node_parameters)


if __name__ == "__main__":
    sys.exit(main())
