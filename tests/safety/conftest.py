"""Robot profiles for the safety filter tests, built in code (the filter needs no MJCF once limits are set)."""

from __future__ import annotations

import pytest

from robot_rl.core.profile import JointSpec, RobotProfile, SafetyLimits


def make_profile(interface: str = "effort", **safety) -> RobotProfile:
    controller = {"effort": "forward_effort_controller", "position": "forward_position_controller",
                  "velocity": "forward_velocity_controller"}[interface]
    from robot_rl.core.profile import Topics

    limits = dict(sensor_timeout_s=0.06, max_command_rate=50.0, position_margin=0.1, velocity_factor=2.0,
                  recover_after=3)
    limits.update(safety)
    lo, hi = {"effort": ((-2.0, -1.0), (2.0, 1.0)), "position": ((-1.5, -3.0), (1.5, 3.0)),
              "velocity": ((-4.0, -6.0), (4.0, 6.0))}[interface]
    return RobotProfile(
        name="testbot", mjcf="sim/testbot/testbot.xml", command_interface=interface, controller=controller,
        control_period_s=0.02, sensor_period_s=0.005,
        joints=(JointSpec("slider", -1.8, 1.8, velocity_max=5.0, position_unit="m"),
                JointSpec("hinge", velocity_max=20.0),
                JointSpec("elbow", -3.1, 3.1, velocity_max=10.0)),
        command_joints=("slider", "elbow"), command_min=lo, command_max=hi,
        topics=Topics(commands=f"/{controller}/commands"), safety=SafetyLimits(**limits),
        **({"kp": (20.0, 20.0), "kd": (0.5, 0.5)} if interface == "position" else {}))  # the robot's PD gains


@pytest.fixture
def profile():
    return make_profile()


@pytest.fixture(name="make_profile")
def make_profile_fixture():
    """Factory: ``make_profile(interface, **safety_limits)``."""
    return make_profile
