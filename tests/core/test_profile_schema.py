"""Robot profile schema: validation errors name the key; command limits default from the MJCF."""

from __future__ import annotations

import pytest

from robot_rl.core.config import ConfigError
from robot_rl.core.profile import load_profile

MJCF = """
<mujoco>
  <worldbody>
    <body name="cart">
      <joint name="slider" type="slide" axis="1 0 0" range="-1 1" limited="true"/>
      <geom type="box" size="0.1 0.1 0.1" mass="1"/>
      <body name="pole">
        <joint name="hinge" type="hinge" axis="0 1 0"/>
        <geom type="capsule" fromto="0 0 0 0 0 0.5" size="0.02" mass="0.1"/>
      </body>
    </body>
  </worldbody>
  <actuator><motor joint="slider" ctrlrange="-7 7" ctrllimited="true"/></actuator>
</mujoco>
"""

PROFILE = """
name: toy
mjcf: {mjcf}
command_interface: effort
controller: forward_effort_controller
control_period_s: 0.02
sensor_period_s: 0.002
joints:
  - {{name: slider, position_min: -1.0, position_max: 1.0, velocity_max: 5.0, effort_max: 7.0, position_unit: m}}
  - {{name: hinge, velocity_max: 30.0}}
command_joints: [slider]
"""


@pytest.fixture
def toy(tmp_path):
    mjcf = tmp_path / "toy.xml"
    mjcf.write_text(MJCF)
    return tmp_path, mjcf


def test_profile_limits_default_from_mjcf(toy):
    tmp_path, mjcf = toy
    p = tmp_path / "toy.yaml"
    p.write_text(PROFILE.format(mjcf=mjcf))
    prof = load_profile(str(p))
    assert prof.command_min == (-7.0,) and prof.command_max == (7.0,)
    assert prof.joint_names == ("slider", "hinge")
    assert prof.joint("hinge").position_max == float("inf")
    with pytest.raises(KeyError, match="no joint 'elbow'"):
        prof.joint("elbow")


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (("command_joints: [slider]", "command_joints: [elbow]"), "command_joints ['elbow'] are not among joints"),
        (("control_period_s: 0.02", "control_period_s: 0"), "must be > 0"),
        (
            ("controller: forward_effort_controller", "controller: effort_ctrl"),
            "does not follow /<controller>/commands",
        ),
        (("command_interface: effort", "command_interface: torque"), "command_interface: expected one of"),
        (("velocity_max: 30.0", "velocity_max: -1.0"), "velocity_max must be > 0"),
        (("sensor_period_s: 0.002", "sensor_period_s: 0.002\nsafety: {recover_after: 0}"), "recover_after"),
        (("sensor_period_s: 0.002", "sensor_period_s: 0.002\nsafety: {sensor_timout_s: 1}"), "safety.sensor_timout_s"),
    ],
)
def test_profile_errors_name_the_key(toy, edit, fragment):
    tmp_path, mjcf = toy
    p = tmp_path / "bad.yaml"
    p.write_text(PROFILE.format(mjcf=mjcf).replace(*edit))
    with pytest.raises(ConfigError) as info:
        load_profile(str(p))
    assert fragment in str(info.value)
    assert str(p) in str(info.value)


def test_unknown_profile_name():
    with pytest.raises(ConfigError, match="hardware/nonexistent_robot.yaml"):
        load_profile("nonexistent_robot")
