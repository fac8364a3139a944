"""Hand cases for robot_rl.safety.SafetyFilter (docs/reliability.md, scenarios 1-5 and 9, at the pure level)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from robot_rl.safety import SafetyFilter

NAMES = ["slider", "hinge", "elbow"]
T = 0.02  # control period of the test profile [s]
DT_SENSOR = 0.005


class Clock:
    """Steady clock + stamp clock driven by the test."""

    def __init__(self):
        self.now = 100.0
        self.stamp = 5.0


def feed(f: SafetyFilter, clock: Clock, n: int = 3, pos=(0.1, 0.2, -0.3), vel=(0.0, 1.0, -0.5), **kw) -> bool:
    ok = True
    for _ in range(n):
        clock.now += DT_SENSOR
        clock.stamp += DT_SENSOR
        ok = f.on_joint_state(NAMES, list(pos), list(vel), [], clock.stamp, clock.now, **kw) and ok
    return ok


@pytest.fixture
def ready(profile):
    f = SafetyFilter(profile)
    clock = Clock()
    assert feed(f, clock, 3)
    out, st = f.filter([0.0, 0.0], clock.now)
    assert st.mode == "normal" and not st.safe
    return f, clock


def test_waiting_until_recover_after_valid_messages(profile):
    f = SafetyFilter(profile)
    clock = Clock()
    out, st = f.filter([1.0, 0.5], clock.now)
    assert st.safe and st.mode == "waiting" and st.level == 2
    np.testing.assert_array_equal(out, [0.0, 0.0])
    feed(f, clock, 2)
    assert f.filter([1.0, 0.5], clock.now)[1].safe
    feed(f, clock, 1)
    out, st = f.filter([1.0, 0.5], clock.now)
    assert not st.safe and st.mode == "normal"


def test_maps_by_name_not_index(profile):
    f = SafetyFilter(profile)
    f.on_joint_state(["elbow", "extra", "slider", "hinge"], [0.3, 9e9, 0.1, 0.2], [3.0, 0.0, 1.0, 2.0], [],
                     1.0, 1.0)
    np.testing.assert_array_equal(f.position, [0.1, 0.2, 0.3])
    np.testing.assert_array_equal(f.velocity, [1.0, 2.0, 3.0])


def test_missing_joint_is_a_fault_naming_it(ready):
    f, clock = ready
    clock.stamp += DT_SENSOR
    assert not f.on_joint_state(["slider", "hinge"], [0.0, 0.0], [0.0, 0.0], [], clock.stamp, clock.now)
    out, st = f.filter([1.0, 1.0], clock.now)
    assert st.safe and "elbow" in st.message
    assert f.counts["rejected_missing_joint"] == 1


@pytest.mark.parametrize("field", ["position", "velocity", "effort"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nonfinite_state_gives_safe_command_within_one_period(ready, field, bad):
    f, clock = ready
    vals = {"position": [0.1, 0.2, 0.3], "velocity": [0.0, 0.0, 0.0], "effort": [0.0, 0.0, 0.0]}
    vals[field][2] = bad
    clock.stamp += DT_SENSOR
    clock.now += DT_SENSOR
    assert not f.on_joint_state(NAMES, vals["position"], vals["velocity"], vals["effort"], clock.stamp, clock.now)
    out, st = f.filter([1.0, 1.0], clock.now)  # the very next control step
    assert st.safe and st.level == 2
    assert f"non-finite {field}" in st.message and "'elbow'" in st.message
    assert np.all(np.isfinite(out))
    np.testing.assert_array_equal(out, [0.0, 0.0])
    # normal operation only after recover_after (3) valid messages
    feed(f, clock, 2)
    assert f.filter([1.0, 1.0], clock.now)[1].safe
    feed(f, clock, 1)
    assert not f.filter([1.0, 1.0], clock.now)[1].safe


def test_invalid_message_restarts_the_recovery_count(ready):
    f, clock = ready
    clock.stamp += DT_SENSOR
    f.on_joint_state(NAMES, [math.nan, 0, 0], [0, 0, 0], [], clock.stamp, clock.now)
    feed(f, clock, 2)
    clock.stamp += DT_SENSOR
    f.on_joint_state(NAMES, [0, 0, 0], [0, math.inf, 0], [], clock.stamp, clock.now)
    feed(f, clock, 2)
    assert f.filter([0.0, 0.0], clock.now)[1].safe
    feed(f, clock, 1)
    assert not f.filter([0.0, 0.0], clock.now)[1].safe


@pytest.mark.parametrize("pos,vel,needle", [
    ((1.95, 0, 0), (0, 0, 0), "position 1.95 of joint 'slider'"),
    ((0, 0, -3.25), (0, 0, 0), "joint 'elbow'"),
    ((0, 0, 0), (10.5, 0, 0), "velocity 10.5 of joint 'slider'"),
    ((0, 0, 0), (0, -40.5, 0), "joint 'hinge'"),
])
def test_impossible_state_is_a_fault(ready, pos, vel, needle):
    f, clock = ready
    clock.stamp += DT_SENSOR
    assert not f.on_joint_state(NAMES, list(pos), list(vel), [], clock.stamp, clock.now)
    out, st = f.filter([1.0, 1.0], clock.now)
    assert st.safe and needle in st.message, st.message
    assert f.counts["rejected_impossible"] == 1


def test_within_margin_and_continuous_joint_accepted(ready):
    f, clock = ready
    # slider limit 1.8 + margin 0.1; hinge has no limit; 2x velocity_max allowed
    assert feed(f, clock, 1, pos=(1.89, 1e6, -3.19), vel=(9.9, 39.0, -19.9))


def test_stale_sensor_gives_safe_command_after_timeout(ready):
    f, clock = ready
    out, st = f.filter([1.0, 0.5], clock.now + 0.0599)  # just inside the timeout: still fresh
    assert not st.safe
    out, st = f.filter([1.0, 0.5], clock.now + 0.0601)
    assert st.safe and "stale" in st.message
    assert f.counts["stale_events"] == 1
    clock.now += 0.07
    feed(f, clock, 3)
    assert not f.filter([1.0, 0.5], clock.now)[1].safe


def test_watchdog_uses_steady_clock_with_frozen_stamps(ready):
    """Sim clock frozen: stamps stop advancing -> messages are rejected as repeated, the steady watchdog fires."""
    f, clock = ready
    for _ in range(20):  # 0.1 s of steady time, same stamp
        clock.now += DT_SENSOR
        f.on_joint_state(NAMES, [0, 0, 0], [0, 0, 0], [], clock.stamp, clock.now)
    assert f.counts["rejected_backwards"] == 20
    out, st = f.filter([1.0, 0.5], clock.now)
    assert st.safe and "stale" in st.message


@pytest.mark.parametrize("offset,counter", [(-0.001, "rejected_backwards"), (0.0, "rejected_backwards")])
def test_backwards_and_repeated_stamps_rejected(ready, offset, counter):
    f, clock = ready
    assert not f.on_joint_state(NAMES, [0, 0, 0], [0, 0, 0], [], clock.stamp + offset, clock.now)
    assert f.counts[counter] == 1
    assert f.diagnostics()["level"] == "WARN"


def test_old_and_future_stamps_rejected_with_receipt_clock(profile):
    f = SafetyFilter(profile)
    assert f.on_joint_state(NAMES, [0, 0, 0], [0, 0, 0], [], 10.0, 1.0, clock_s=10.01)
    assert not f.on_joint_state(NAMES, [0, 0, 0], [0, 0, 0], [], 10.02, 1.0, clock_s=10.2)
    assert f.counts["rejected_old"] == 1
    assert not f.on_joint_state(NAMES, [0, 0, 0], [0, 0, 0], [], 11.0, 1.0, clock_s=10.2)
    assert f.counts["rejected_future"] == 1
    assert not f.on_joint_state(NAMES, [0, 0, 0], [0, 0, 0], [], math.nan, 1.0)
    assert f.counts["rejected_malformed"] == 1
    assert f.on_joint_state(NAMES, [0, 0, 0], [0, 0, 0], [], 10.21, 1.0, clock_s=10.2)


def test_malformed_lengths_rejected_without_fault(ready):
    """Arrays that do not match the names: dropped like a lost message (counted, WARN), the robot keeps running on
    the last accepted state; a driver that keeps sending them is stopped by the watchdog (docs/safety.md)."""
    f, clock = ready
    clock.stamp += DT_SENSOR
    assert not f.on_joint_state(NAMES, [0, 0], [0, 0, 0], [], clock.stamp, clock.now)
    assert not f.on_joint_state(NAMES, [0, 0, 0], [0, 0, 0], [1.0], clock.stamp, clock.now)
    assert not f.on_joint_state(NAMES, [0, 0, 0], [0], [], clock.stamp, clock.now)
    assert not f.on_joint_state(NAMES, [0, "x", 0], [0, 0, 0], [], clock.stamp, clock.now)
    assert f.counts["rejected_malformed"] == 4
    out, st = f.filter([0.5, 0.5], clock.now + 0.001)
    assert not st.safe and st.mode == "normal"
    np.testing.assert_array_equal(f.position, [0.1, 0.2, -0.3])  # the last accepted state, untouched
    d = f.diagnostics()
    assert d["level"] == "WARN" and "rejected_malformed" in d["values"]["last_rejected"]
    # a good message right after is used at once (no recover_after wait: there was no fault)
    assert feed(f, clock, 1, pos=(0.2, 0.2, -0.3))
    assert not f.filter([0.5, 0.5], clock.now)[1].safe
    # a driver that keeps sending them: nothing accepted -> stale-sensor fault within sensor_timeout_s + 1 T
    last_accept = clock.now
    while clock.now - last_accept <= f.limits.sensor_timeout_s + T:
        clock.now += DT_SENSOR
        clock.stamp += DT_SENSOR
        f.on_joint_state(NAMES, [0, 0], [0, 0, 0], [], clock.stamp, clock.now)
        out, st = f.filter([0.5, 0.5], clock.now)
        if st.safe:
            break
    assert st.safe and "stale" in st.message
    assert clock.now - last_accept <= f.limits.sensor_timeout_s + DT_SENSOR


def test_command_clamped_to_limits(ready):
    f, clock = ready
    for _ in range(20):  # ramp up under the rate limit (50 / s -> 1.0 per 0.02 s)
        clock.now += T
        feed(f, clock, 1)
        out, st = f.filter([5.0, -5.0], clock.now)
    np.testing.assert_array_equal(out, [2.0, -1.0])
    assert st.clamped and st.level == 1


def test_rate_limit_per_step_and_dt_cap(ready):
    f, clock = ready
    clock.now += 0.01
    out, st = f.filter([2.0, 1.0], clock.now)
    np.testing.assert_allclose(out, [0.5, 0.5])  # 50 units/s x 0.01 s
    assert st.rate_limited
    clock.now += 0.05  # a late call: dt capped at one control period (0.02 s) -> at most 1.0
    feed(f, clock, 1)
    out, _ = f.filter([-2.0, 1.0], clock.now)
    np.testing.assert_allclose(out, [-0.5, 1.0])


@pytest.mark.parametrize("cmd", [[math.nan, 0.0], [0.0, math.inf], [-math.inf, math.nan]])
def test_nonfinite_command_gives_safe_command(ready, cmd):
    f, clock = ready
    out, st = f.filter(cmd, clock.now)
    assert st.safe and "non-finite command" in st.message
    np.testing.assert_array_equal(out, [0.0, 0.0])
    assert f.counts["commands_nonfinite"] == 1
    assert not f.filter([0.1, 0.1], clock.now + 0.001)[1].safe  # a sensor fault it is not: resumes next step


def test_wrong_size_command_gives_safe_command(ready):
    f, clock = ready
    out, st = f.filter([0.1, 0.2, 0.3], clock.now)
    assert st.safe and "3 values, expected 2" in st.message


def test_estop_latches_until_explicit_reset(ready):
    f, clock = ready
    f.estop("operator pressed e-stop")
    for _ in range(10):
        feed(f, clock, 1)
        out, st = f.filter([1.0, 1.0], clock.now)
        assert st.safe and st.mode == "estop" and "operator pressed" in st.message
    assert f.diagnostics()["level"] == "ERROR"
    f.reset()
    assert f.filter([1.0, 1.0], clock.now)[1].safe  # needs fresh messages after a reset
    feed(f, clock, 3)
    assert not f.filter([1.0, 1.0], clock.now)[1].safe
    assert f.counts["estops"] == 1


def test_fallback_damping_uses_fresh_velocity_only(make_profile):
    f = SafetyFilter(make_profile("effort", safe_command="damping", damping_gain=0.5))
    f.on_joint_state(NAMES, [0, 0, 0], [1.0, 0.0, -1.2], [], 1.0, 1.0)
    out, st = f.filter([0, 0], 1.001)
    assert st.safe and st.mode == "waiting"
    np.testing.assert_allclose(out, [-0.5, 0.6])
    out, _ = f.filter([0, 0], 1.5)  # velocity measurement is stale -> zero
    np.testing.assert_array_equal(out, [0.0, 0.0])


def test_fallback_damping_clamped(make_profile):
    f = SafetyFilter(make_profile("effort", safe_command="damping", damping_gain=5.0))
    f.on_joint_state(NAMES, [0, 0, 0], [9.0, 0.0, -9.0], [], 1.0, 1.0)
    out, _ = f.filter([0, 0], 1.0)
    np.testing.assert_allclose(out, [-2.0, 1.0])


def test_fallback_position_holds_last_measured_position(make_profile):
    f = SafetyFilter(make_profile("position"))
    clock = Clock()
    feed(f, clock, 3, pos=(0.4, 7.0, -2.0))
    assert not f.filter([0.4, -2.0], clock.now)[1].safe
    f.estop("test")
    out, st = f.filter([1.0, 1.0], clock.now)
    assert st.safe
    np.testing.assert_array_equal(out, [0.4, -2.0])
    feed(f, clock, 1, pos=(2.5, 0.0, 0.0))  # impossible: the hold position stays the last accepted one
    np.testing.assert_array_equal(f.filter([0, 0], clock.now)[0], [0.4, -2.0])


def test_fallback_velocity_is_zero(make_profile):
    f = SafetyFilter(make_profile("velocity"))
    out, st = f.filter([3.0, 3.0], 0.0)
    np.testing.assert_array_equal(out, [0.0, 0.0])


def test_leaving_fallback_ramps_under_rate_limit(ready):
    f, clock = ready
    f.estop("x")
    f.filter([0.0, 0.0], clock.now)
    f.reset()
    feed(f, clock, 3)
    clock.now += T
    out, st = f.filter([2.0, 1.0], clock.now)
    np.testing.assert_allclose(out, [1.0, 1.0])  # from the safe 0 by at most 50 x 0.02


def test_steady_clock_backwards_is_a_fault(ready):
    f, clock = ready
    out, st = f.filter([0.5, 0.5], clock.now - 1.0)
    assert st.safe and "backwards" in st.message
    assert f.counts["clock_backwards"] == 1


def test_out_buffer_and_diagnostics(ready):
    f, clock = ready
    buf = np.empty(2)
    clock.now += T
    out, st = f.filter([0.1, -0.1], clock.now, out=buf)
    assert out is buf
    d = f.diagnostics()
    assert d["level"] == "OK" and d["mode"] == "normal"
    assert set(d["values"]) >= {"messages", "accepted", "safe_commands", "rejected_nonfinite"}
    assert all(isinstance(v, str) for v in d["values"].values())


def test_profile_without_limits_refused(profile):
    import dataclasses

    with pytest.raises(ValueError, match="no command limits"):
        SafetyFilter(dataclasses.replace(profile, command_min=(), command_max=()))
