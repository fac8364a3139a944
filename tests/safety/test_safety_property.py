"""Property test: adversarial sensor / command / clock sequences never produce an unsafe command
(docs/reliability.md, scenario 5).

Checked after every ``filter`` call: output finite and within the command limits; a normal (non-safe) output moved
by at most ``max_command_rate`` x one control period; a normal output never follows a latched e-stop, a stale sensor,
or a sensor fault without ``recover_after`` accepted messages since; a safe output equals the interface fallback.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from robot_rl.safety import SafetyFilter

NAMES = ["slider", "hinge", "elbow"]
FAULT_COUNTERS = ("rejected_nonfinite", "rejected_impossible", "rejected_missing_joint")

weird = st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 1e30, 0.0, -0.0, 1e-300])
value = st.one_of(st.floats(-5, 5), st.floats(-50, 50), weird)
time_step = st.one_of(st.floats(0.0, 0.03), st.sampled_from([0.0, -0.01, -5.0, 0.2, 1e6, math.nan, 0.005, 0.02]))

state_event = st.tuples(
    st.just("state"),
    st.one_of(st.just(NAMES), st.permutations(NAMES), st.just(["slider", "elbow"]),
              st.just(["elbow", "hinge", "slider", "wrist"])),
    st.lists(value, min_size=3, max_size=4), st.lists(value, min_size=3, max_size=4),
    st.one_of(st.just([]), st.lists(value, min_size=3, max_size=4)),
    time_step,  # stamp step (negative / nan / jumps)
    st.one_of(st.floats(0.0, 0.01), st.just(0.005)),  # steady-clock step
)
command_event = st.tuples(
    st.just("command"),
    st.one_of(st.lists(value, min_size=2, max_size=2), st.lists(st.floats(-3, 3), min_size=2, max_size=2),
              st.lists(value, min_size=0, max_size=3)),
    time_step,
)
other_event = st.sampled_from([("estop",), ("reset",)])
good_state = st.tuples(st.just("good"), st.lists(st.floats(-1.0, 1.0), min_size=3, max_size=3))
small_step = st.one_of(st.floats(0.0, 0.02), st.just(0.005))
nominal_command = st.tuples(st.just("command"), st.lists(st.floats(-4, 4), min_size=2, max_size=2), small_step)
# Weighted mix: enough valid streams to spend long stretches in normal operation, where clamp and rate limit act.
# A stream: valid joint states and commands alternating at a steady period (long stretches of normal operation).
stream = st.tuples(st.just("stream"), st.lists(st.lists(st.floats(-4, 4), min_size=2, max_size=2), min_size=1,
                                               max_size=30), st.floats(0.001, 0.02))
events = st.lists(st.one_of(stream, good_state, nominal_command, command_event, state_event, other_event),
                  min_size=5, max_size=60)
WARMUP = [("good", [0.0, 0.0, 0.0])] * 5  # every sequence starts from normal operation


def run_sequence(f: SafetyFilter, seq) -> int:
    """Run one sequence, asserting the properties; return the number of normal (non-safe) outputs."""
    lo, hi = f.cmd_min, f.cmd_max
    rate_step = f.limits.max_command_rate * f.profile.control_period_s
    now, stamp = 10.0, 3.0
    stamp_hi = stamp
    prev = None
    n_normal = 0
    estopped = False
    since_fault = 0
    last_accept_now = -math.inf
    expanded = []
    for ev in seq:
        if ev[0] == "stream":
            for cmd in ev[1]:
                expanded += [("good", [0.2, -0.3, 0.4]), ("command", cmd, ev[2])]
        else:
            expanded.append(ev)
    for ev in expanded:
        kind = ev[0]
        if kind in ("state", "good"):
            before = {k: f.counts[k] for k in FAULT_COUNTERS}
            if kind == "good":
                stamp = stamp_hi + 0.005
                now += 0.005
                stamp_hi = stamp
                accepted = f.on_joint_state(NAMES, ev[1], [0.1, -0.2, 0.3], [], stamp, now)
            else:
                _, names, pos, vel, eff, dstamp, dnow = ev
                stamp += dstamp if math.isfinite(dstamp) else 0.0
                stamp_hi = max(stamp_hi, stamp)
                now += dnow
                stamp_arg = math.nan if not math.isfinite(dstamp) else stamp
                accepted = f.on_joint_state(names, pos[:len(names)] if len(pos) >= len(names) else pos,
                                            vel[:len(names)] if len(vel) >= len(names) else vel,
                                            eff[:len(names)] if len(eff) > len(names) else eff, stamp_arg, now)
            if accepted:
                since_fault += 1
                last_accept_now = now
            if any(f.counts[k] != before[k] for k in FAULT_COUNTERS):
                since_fault = 0
                faulted = True
            else:
                faulted = False
            if faulted:  # the very next control step must be safe
                probe, st_ = f.filter([0.5, 0.5], now)
                assert st_.safe
                assert np.all(np.isfinite(probe)) and np.all(probe >= lo) and np.all(probe <= hi)
                prev = probe.copy()
        elif kind == "estop":
            f.estop("property test")
            estopped = True
        elif kind == "reset":
            if estopped:
                since_fault = 0
            f.reset()
            estopped = False
        else:
            _, cmd, dnow = ev
            t_arg = now + dnow  # nan or backwards on purpose for some events
            if math.isfinite(dnow) and dnow >= 0:
                now = t_arg
            out, status = f.filter(cmd, t_arg)
            assert out.dtype == np.float64 and out.shape == (2,)
            assert np.all(np.isfinite(out)), (cmd, out, status)
            assert np.all(out >= lo) and np.all(out <= hi), (cmd, out, status)
            if status.safe:
                if f.interface in ("velocity",) or (f.interface == "effort" and f.limits.safe_command == "zero"):
                    np.testing.assert_array_equal(out, np.clip(0.0, lo, hi))
            else:
                n_normal += 1
                assert not estopped
                assert since_fault >= f.limits.recover_after
                assert now - last_accept_now <= f.limits.sensor_timeout_s
                if prev is not None:
                    assert np.all(np.abs(out - prev) <= rate_step + 1e-9), (prev, out)
            prev = out.copy()
    return n_normal


@pytest.mark.parametrize("interface,safety", [
    ("effort", {}),
    ("effort", {"max_command_rate": math.inf}),
    ("effort", {"safe_command": "damping", "damping_gain": 3.0}),
    ("position", {}),
    ("velocity", {"recover_after": 1}),
])
def test_adversarial_sequences_never_unsafe(make_profile, interface, safety):
    profile = make_profile(interface, **safety)
    normal_outputs = []

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(events)
    def check(seq):
        normal_outputs.append(run_sequence(SafetyFilter(profile), WARMUP + seq))

    check()
    # Not vacuous: a good share of the outputs went through clamp and rate limit rather than the fallback.
    assert sum(normal_outputs) > 400, sum(normal_outputs)


def test_long_random_walk_never_unsafe(make_profile):
    """One long seeded sequence mixing good streams with bursts of garbage (covers long normal stretches)."""
    rng = np.random.default_rng(0)
    f = SafetyFilter(make_profile("effort"))
    seq = []
    garbage = [math.nan, math.inf, -math.inf, 1e300, 7.0]
    for _ in range(3000):
        r = rng.random()
        if r < 0.45:
            seq.append(("good", list(rng.uniform(-1, 1, 3))))
        elif r < 0.9:
            cmd = list(rng.normal(0, 3, 2))
            if rng.random() < 0.1:
                cmd[rng.integers(2)] = garbage[rng.integers(len(garbage))]
            seq.append(("command", cmd, float(rng.choice([0.005, 0.02, 0.0, 0.1, -0.5]))))
        elif r < 0.97:
            vals = list(rng.uniform(-1, 1, 3))
            vals[rng.integers(3)] = garbage[rng.integers(len(garbage))]
            seq.append(("state", NAMES, vals, [0.0, 0.0, 0.0], [], 0.005, 0.005))
        else:
            seq.append(("estop",) if rng.random() < 0.5 else ("reset",))
    run_sequence(f, seq)
    assert f.counts["commands"] > 1000 and f.counts["safe_commands"] < f.counts["commands"]
