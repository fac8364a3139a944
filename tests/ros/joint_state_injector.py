"""Fault injector for ROS tests: a separate process publishing cart-pole ``/joint_states`` by a plan.

Usage: ``python joint_state_injector.py PLAN`` where PLAN is ``phase:seconds[,phase:seconds...]``. Phases:
``valid`` (a slowly moving near-upright state that makes an LQR policy command a non-zero force);
``nan_position``, ``inf_velocity``, ``neg_inf_position`` (non-finite values); ``impossible_velocity`` (finite, 4x
the hinge's limit); ``silent`` (publish nothing); ``frozen_clock`` (valid values, but a simulation clock that
stopped: ``/clock`` and every header stamp stay at one time); ``old_stamp`` / ``future_stamp`` (stamps 1 s off).
Publishes at 100 Hz once a subscriber is matched and prints ``PHASE <name> <time.monotonic()>`` when each phase
starts (CLOCK_MONOTONIC is system-wide, so the test compares it with its own receive times).
"""

from __future__ import annotations

import math
import sys
import time


def main(plan: str) -> int:
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import JointState

    phases = [(p.split(":")[0], float(p.split(":")[1])) for p in plan.split(",")]
    rclpy.init()
    node = rclpy.create_node("joint_state_injector")
    pub = node.create_publisher(JointState, "/joint_states", QoSProfile(depth=10,
                                                                         reliability=ReliabilityPolicy.RELIABLE))
    msg = JointState(name=["slider", "hinge"], effort=[0.0, 0.0])
    period = 0.01
    k = 0
    # Messages sent before discovery completes are lost (volatile QoS): wait until the node under test listens.
    end = time.monotonic() + 20.0
    while pub.get_subscription_count() == 0 and time.monotonic() < end:
        time.sleep(0.01)
    time.sleep(0.2)
    from rclpy.duration import Duration
    from rosgraph_msgs.msg import Clock

    clock_pub = node.create_publisher(Clock, "/clock", 10)
    for name, seconds in phases:
        print(f"PHASE {name} {time.monotonic():.6f}", flush=True)
        frozen = node.get_clock().now().to_msg()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t = k * period
            pos = [0.05 * math.sin(t), 0.05 + 0.02 * math.sin(2.0 * t)]
            vel = [0.05 * math.cos(t), 0.04 * math.cos(2.0 * t)]
            if name == "nan_position":
                pos[1] = math.nan
            elif name == "inf_velocity":
                vel[1] = math.inf
            elif name == "neg_inf_position":
                pos[0] = -math.inf
            elif name == "impossible_velocity":
                vel[1] = 100.0  # finite, but 4x the hinge's velocity_max of 25 rad/s
            elif name not in ("silent", "valid", "frozen_clock", "impossible_velocity", "old_stamp", "future_stamp"):
                raise SystemExit(f"unknown phase {name!r}")
            if name != "silent":
                msg.position, msg.velocity = pos, vel
                now = node.get_clock().now()
                if name == "frozen_clock":
                    msg.header.stamp = frozen
                elif name in ("old_stamp", "future_stamp"):  # 1 s off: beyond the filter's age / future bounds
                    shift = Duration(seconds=-1.0 if name == "old_stamp" else 1.0)
                    msg.header.stamp = (now + shift).to_msg()
                else:
                    msg.header.stamp = now.to_msg()
                if name == "frozen_clock":
                    clock_pub.publish(Clock(clock=frozen))
                pub.publish(msg)
            k += 1
            time.sleep(period)
    print(f"PHASE end {time.monotonic():.6f}", flush=True)
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
