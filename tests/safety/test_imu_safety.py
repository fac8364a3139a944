"""SafetyFilter with an IMU (legged robots): stale / non-finite / malformed IMU samples and fall detection
(docs/safety.md, "IMU checks"; docs/reliability.md, scenario 19 at the pure level)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from robot_rl.safety import SafetyFilter

NAMES = ["slider", "hinge", "elbow"]
POS, VEL = [0.1, 0.2, -0.3], [0.0, 1.0, -0.5]
UPRIGHT = (1.0, 0.0, 0.0, 0.0)


def tilted(angle: float):
    """Orientation (w, x, y, z) rolled by ``angle`` [rad] about x."""
    return (math.cos(angle / 2), math.sin(angle / 2), 0.0, 0.0)


class Robot:
    """Joint states and IMU samples every 5 ms on a test clock."""

    def __init__(self, f: SafetyFilter):
        self.f, self.now, self.stamp = f, 100.0, 5.0

    def tick(self, n: int = 1, imu=UPRIGHT, gyro=(0.0, 0.0, 0.0)) -> None:
        for _ in range(n):
            self.now += 0.005
            self.stamp += 0.005
            if imu is not None:
                self.f.on_imu(imu, gyro, self.now)
            self.f.on_joint_state(NAMES, POS, VEL, [], self.stamp, self.now)


@pytest.fixture
def imu_profile(make_profile):
    return dataclasses.replace(make_profile("position", fall_tilt=1.0), imu_site="imu")


@pytest.fixture
def robot(imu_profile):
    r = Robot(SafetyFilter(imu_profile))
    r.tick(3)
    _, st = r.f.filter([0.0, 0.0], r.now)
    assert st.mode == "normal" and not st.safe
    return r


def test_normal_needs_imu_samples_too(imu_profile):
    r = Robot(SafetyFilter(imu_profile))
    r.tick(10, imu=None)
    out, st = r.f.filter([0.0, 0.0], r.now)
    assert st.safe and st.mode == "waiting" and "waiting for the first IMU sample" in st.message
    r.tick(1)
    _, st = r.f.filter([0.0, 0.0], r.now)
    assert st.mode == "normal" and not st.safe
    assert np.allclose(r.f.imu_orientation, UPRIGHT) and r.f.tilt == 0.0


def test_profile_without_imu_needs_none(make_profile):
    f = SafetyFilter(make_profile("position"))
    assert not f.requires_imu
    r = Robot(f)
    r.tick(3, imu=None)
    assert f.filter([0.0, 0.0], r.now)[1].mode == "normal"


def test_stale_imu_holds_measured_position_within_bound(robot):
    f = robot.f
    last_imu = robot.now
    robot.tick(1, imu=None)  # joint states go on, the IMU stops
    timeout = f.limits.sensor_timeout_s
    out, st = f.filter([0.5, 0.5], last_imu + timeout - 1e-6)
    assert not st.safe
    out, st = f.filter([0.5, 0.5], last_imu + timeout + 1e-6)
    assert st.safe and st.mode == "fault" and "IMU stale" in st.message
    assert out.tolist() == [POS[0], POS[2]]  # hold: the measured command-joint positions
    assert f.counts["imu_stale_events"] == 1
    # joint states alone do not recover it; a fresh IMU sample plus recover_after joint states do
    robot.now = last_imu + timeout  # the test clock catches up with the filter calls above
    robot.tick(5, imu=None)
    assert f.filter([0.0, 0.0], robot.now)[1].safe
    robot.tick(f.limits.recover_after)
    assert f.filter([0.0, 0.0], robot.now)[1].mode == "normal"


@pytest.mark.parametrize("imu, gyro, counter", [
    ((math.nan, 0.0, 0.0, 0.0), (0.0, 0.0, 0.0), "imu_rejected_nonfinite"),
    (UPRIGHT, (0.0, math.inf, 0.0), "imu_rejected_nonfinite"),
    ((0.0, 0.0, 0.0, 0.0), (0.0, 0.0, 0.0), "imu_rejected_malformed"),
    ((1.0, 0.0), (0.0, 0.0, 0.0), "imu_rejected_malformed"),
])
def test_bad_imu_sample_is_a_fault_at_the_next_step(robot, imu, gyro, counter):
    f = robot.f
    assert not f.on_imu(imu, gyro, robot.now)
    out, st = f.filter([0.5, 0.5], robot.now)
    assert st.safe and st.mode == "fault" and out.tolist() == [POS[0], POS[2]]
    assert f.counts[counter] == 1 and counter in f.last_rejection
    assert np.allclose(f.imu_orientation, UPRIGHT), "a rejected sample is never used"
    robot.tick(f.limits.recover_after)
    assert f.filter([0.0, 0.0], robot.now)[1].mode == "normal"


def test_fall_latches_the_estop_until_reset(robot):
    f = robot.f
    robot.tick(1, imu=tilted(0.9))  # within fall_tilt 1.0 rad
    assert f.filter([0.0, 0.0], robot.now)[1].mode == "normal"
    assert f.tilt == pytest.approx(0.9)
    robot.tick(1, imu=tilted(-1.2))
    out, st = f.filter([0.5, 0.5], robot.now)
    assert st.safe and st.mode == "estop" and "fall detected: base tilt 1.200 rad" in st.message
    assert out.tolist() == [POS[0], POS[2]] and f.counts["falls"] == 1
    robot.tick(20)  # upright again: still latched
    assert f.filter([0.0, 0.0], robot.now)[1].mode == "estop"
    f.reset()
    robot.tick(f.limits.recover_after)
    assert f.filter([0.0, 0.0], robot.now)[1].mode == "normal"


def test_upside_down_is_a_fall_too(robot):
    robot.tick(1, imu=(0.0, 1.0, 0.0, 0.0))
    assert robot.f.filter([0.0, 0.0], robot.now)[1].mode == "estop" and robot.f.tilt == pytest.approx(math.pi)
