"""sim_robot over real DDS: joint states flow, commands act, and the robot-side command timeout
(docs/reliability.md, scenario 8)."""

from __future__ import annotations

import math
import signal
import sys
import textwrap
import time

import pytest

pytestmark = pytest.mark.ros

COMMANDER = textwrap.dedent("""
    import time, rclpy
    from std_msgs.msg import Float64MultiArray
    rclpy.init()
    node = rclpy.create_node("commander")
    pub = node.create_publisher(Float64MultiArray, "/forward_effort_controller/commands", 10)
    while True:  # killed with SIGKILL by the test, like a crashing policy process
        pub.publish(Float64MultiArray(data=[3.0]))
        time.sleep(0.02)
""")


def test_command_timeout_applies_safe_command_after_commander_dies(procs, probe):
    from std_msgs.msg import Float64MultiArray

    applied = probe.record(Float64MultiArray, "/sim_robot/applied_command")
    procs.node("sim_robot", params={"robot": "cartpole", "initial_positions": [0.0, 0.0]})
    probe.wait_for(lambda: len(applied) > 5, 15.0, "sim_robot applied_command")
    assert all(m.data[0] == 0.0 for _, m in applied), "no command yet: the safe (zero-effort) command must apply"
    commander = procs.start("commander", [sys.executable, "-c", COMMANDER])
    probe.wait_for(lambda: any(m.data[0] == 3.0 for _, m in applied), 10.0, "the commander's 3 N to be applied")
    commander.send_signal(signal.SIGKILL)
    commander.wait()
    t_kill = time.monotonic()
    zero = probe.wait_for(lambda: next((t for t, m in applied if t > t_kill and m.data[0] == 0.0), None), 5.0,
                          "the safe command after the commander was killed")
    timeout_s, sensor_period_s = 0.1, 0.01  # hardware/cartpole.yaml
    # Within the command timeout, plus one sensor period to publish it and a scheduling allowance (2 shared cores).
    print(f"sim_robot: safe command {zero - t_kill:.3f} s after the commander was killed")
    assert zero - t_kill <= timeout_s + sensor_period_s + 0.08, f"safe command after {zero - t_kill:.3f} s"
    time.sleep(0.2)
    with probe.lock:
        after = [m.data[0] for t, m in applied if t > zero]
    assert after and all(v == 0.0 for v in after), "the safe command must hold while no commands arrive"
    assert procs.stop("sim_robot") == 0
    assert "applying the safe command" in procs.log("sim_robot")


def test_non_finite_commands_are_refused_and_sim_clock_is_published(procs, probe):
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray

    applied = probe.record(Float64MultiArray, "/sim_robot/applied_command")
    states = probe.record(JointState, "/joint_states")
    clock = probe.record(Clock, "/clock")
    pub = probe.publisher(Float64MultiArray, "/forward_effort_controller/commands")
    procs.node("sim_robot", params={"robot": "cartpole", "command_timeout_s": 0.5, "publish_clock": True})
    probe.wait_for(lambda: len(states) > 3, 15.0, "joint states")
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        for value in (math.nan, math.inf, 2.0):
            pub.publish(Float64MultiArray(data=[value]))
            time.sleep(0.01)
    probe.wait_for(lambda: any(m.data[0] == 2.0 for _, m in applied), 5.0, "the finite command to apply")
    with probe.lock:
        assert all(math.isfinite(m.data[0]) for _, m in applied)
        js = states[-1][1]
    assert list(js.name) == ["slider", "hinge"] and len(js.position) == 2 and len(js.velocity) == 2
    with probe.lock:
        sim_t = [c.clock.sec + 1e-9 * c.clock.nanosec for _, c in clock]
        stamps = [m.header.stamp.sec + 1e-9 * m.header.stamp.nanosec for _, m in states]
    # Sim time starts at 0 and only moves forward; joint states carry it (not the wall clock).
    assert sim_t and all(b > a for a, b in zip(sim_t, sim_t[1:])) and sim_t[-1] < 60.0
    assert stamps[-1] < 60.0 and stamps[-1] in [pytest.approx(t, abs=1e-6) for t in sim_t]
    assert procs.stop("sim_robot") == 0
    assert "refused command" in procs.log("sim_robot")


def test_bad_parameter_refuses_to_start(procs):
    procs.node("sim_robot", params={"sensor_period_s": -0.01})
    assert procs.wait("sim_robot", 20.0) == 2
    assert "parameter 'sensor_period_s'" in procs.log("sim_robot")
    procs.node("sim_robot", key="sim2", params={"initial_positions": [0.0, 0.1, 0.2]})
    assert procs.wait("sim2", 20.0) == 2
    assert "parameter 'initial_positions': expected 2 values" in procs.log("sim2")
