"""The ROS-free cores of the nodes: SimPlant timing, PolicyLoop through the real safety filter, e-stop latch,
latency statistics, planner state mapping, LQR-as-linear-policy. Fast, no DDS."""

from __future__ import annotations

import math

import mujoco
import numpy as np
import pytest

from robot_rl.core.profile import load_profile
from robot_rl.deploy.estop_latch import EstopLatch
from robot_rl.deploy.latency import LatencyStats
from robot_rl.deploy.lqr_policy import lqr_gain, observation_gain
from robot_rl.deploy.policy_loop import PolicyLoop, SensorGate
from robot_rl.deploy.sim_plant import SimPlant
from robot_rl.deploy.state_builder import StateBuilder


@pytest.fixture(scope="module")
def profile():
    return load_profile("cartpole")


def plant(profile, **kw):
    model = mujoco.MjModel.from_xml_path(str(profile.mjcf_path()))
    return SimPlant(profile, model, mujoco.MjData(model), **kw)


def test_sim_plant_command_timeout_and_latency(profile):
    p = plant(profile, latency_s=0.03, command_timeout_s=0.1)
    p.advance(0.0)
    assert p.timed_out and p.applied_command.tolist() == [0.0]
    assert p.on_command([4.0], 0.0)
    p.advance(0.02)
    assert p.applied_command.tolist() == [0.0], "latency: not applied before 0.03 s"
    p.advance(0.05)
    assert p.applied_command.tolist() == [4.0] and not p.timed_out
    assert p.data.ctrl[0] == 4.0
    p.advance(0.12)
    assert p.applied_command.tolist() == [4.0], "still within timeout + latency"
    p.advance(0.2)
    assert p.timed_out and p.applied_command.tolist() == [0.0] and p.timeouts == 1
    assert not p.on_command([math.nan], 0.2) and not p.on_command([1.0, 2.0], 0.2) and p.rejected == 2
    assert p.on_command([50.0], 0.2)  # clipped like an actuator to the +-10 N range
    p.advance(0.3)
    assert p.applied_command.tolist() == [10.0]
    assert p.data.time == pytest.approx(0.3)


def test_sim_plant_slips_instead_of_catching_up_forever(profile):
    p = plant(profile)
    p.advance(0.0)
    assert p.advance(100.0, max_steps=50) == 50
    assert p.advance(100.004) == 0 and p.advance(100.011) == 1


def test_sim_plant_measures_in_profile_order_with_noise(profile):
    p = plant(profile, position_noise_std=0.01, rng=np.random.default_rng(0))
    p.set_initial_state([0.3, -0.2], [0.1, 0.0])
    q, v, _ = p.measure()
    assert np.allclose(q, [0.3, -0.2], atol=0.05) and not np.allclose(q, [0.3, -0.2], atol=1e-9)
    assert np.allclose(v, [0.1, 0.0])
    with pytest.raises(ValueError, match="initial positions need 2 values"):
        p.set_initial_state([0.0])


def make_loop(profile, policy):
    from robot_rl.envs import make
    from robot_rl.safety import SafetyFilter

    builder = make("robot_rl/CartpoleBalance-v0").unwrapped.observation_builder
    return PolicyLoop(SafetyFilter(profile), builder, policy, control_period_s=profile.control_period_s)


def test_policy_loop_nan_state_gives_safe_command_then_recovers(profile):
    loop = make_loop(profile, lambda obs: np.array([3.0]))
    names = ["hinge", "slider"]  # mapped by name, not index
    t = 0.0
    for k in range(profile.safety.recover_after):
        t = 0.01 * k
        assert loop.on_joint_state(names, [0.0, 0.1], [0.0, 0.0], [], stamp_s=t, now_s=t)
    cmd, status, fresh = loop.step(t)
    assert not status.safe and fresh
    cmd, status, fresh = loop.step(t + 0.005)  # the profile's rate limit (1000 N/s) allows 5 N in 5 ms
    assert cmd.tolist() == [3.0] and not status.safe and not fresh
    assert not loop.on_joint_state(names, [math.nan, 0.1], [0.0, 0.0], [], stamp_s=t + 0.01, now_s=t + 0.01)
    cmd, status, _ = loop.step(t + 0.01)
    assert status.safe and cmd.tolist() == [0.0] and "hinge" in status.message
    for k in range(1, profile.safety.recover_after + 1):
        t2 = t + 0.01 + 0.01 * k
        loop.on_joint_state(names, [0.0, 0.1], [0.0, 0.0], [], stamp_s=t2, now_s=t2)
        cmd, status, _ = loop.step(t2)
        assert status.safe == (k < profile.safety.recover_after)
    loop.record_publish(t2 + 0.001, t2, True)
    assert len(loop.latency) == 1


def test_policy_loop_builds_the_env_observation(profile):
    seen = []
    loop = make_loop(profile, lambda obs: seen.append(obs) or np.array([0.0]))
    for k in range(6):
        loop.on_joint_state(["slider", "hinge"], [0.2, 0.3], [1.0, -2.0], [], stamp_s=k * 0.01, now_s=k * 0.01)
    loop.step(0.05)
    assert np.allclose(seen[-1], [0.2, math.cos(0.3), math.sin(0.3), 1.0, -2.0], atol=1e-6)
    assert seen[-1].dtype == np.float32


def _gate_run(gate, arrivals):
    return [t for t in arrivals if gate.due(t)]


def test_sensor_gate_decimates_a_2x_sensor_stream_to_the_control_period():
    rng = np.random.default_rng(0)
    # joint states every 10 ms with 1 ms (sigma) arrival jitter, control period 20 ms: one action per period, always
    # on the same (every other) message, so jitter does not make it alternate between two messages
    arrivals = np.arange(500) * 0.01 + np.abs(rng.normal(0.0, 0.001, 500))
    acted = _gate_run(SensorGate(0.02, 0.01), arrivals)
    assert 248 <= len(acted) <= 251
    index = np.searchsorted(arrivals, acted)
    assert set(np.diff(index)) == {2}
    gaps = np.diff(acted)
    assert abs(np.mean(gaps) - 0.02) < 1e-4 and gaps.min() > 0.015


def test_sensor_gate_acts_on_every_message_at_the_control_rate_and_skips_missed_boundaries():
    rng = np.random.default_rng(1)
    # sensor period == control period (500 Hz): every message acts, also with jitter of a quarter period
    arrivals = np.arange(1000) * 0.002 + rng.uniform(0.0, 0.0005, 1000)
    assert len(_gate_run(SensorGate(0.002, 0.002), arrivals)) == 1000
    # a 200 ms sensor gap, then 10 ms messages again: the first message after the gap acts, no burst of actions
    gate = SensorGate(0.02, 0.01)
    before = np.arange(10) * 0.01
    after = 0.29 + np.arange(10) * 0.01
    assert len(_gate_run(gate, before)) == 5
    acted = _gate_run(gate, after)
    assert acted[0] == after[0] and len(acted) == 5 and np.allclose(np.diff(acted), 0.02)


def test_sensor_gate_phase_locks_onto_the_stream():
    # the first message arrives 7 ms late (a slow first delivery): the grid starts off-phase, 3 ms before the
    # messages it acts on (2 ms of margin left against early jitter); the lock moves the boundaries onto them
    arrivals = np.concatenate([[0.007], 0.01 + np.arange(400) * 0.01])
    gate = SensorGate(0.02, 0.01)
    acted = _gate_run(gate, arrivals)
    assert abs(len(acted) - 4.01 / 0.02) <= 2 and np.allclose(np.diff(acted[1:]), 0.02)
    assert abs(gate._due_s - (acted[-1] + 0.02)) < 1e-4  # the next boundary sits on the next message
    unlocked = SensorGate(0.02, 0.01, gain=0.0)  # without the lock the boundaries stay 3 ms early
    acted = _gate_run(unlocked, arrivals)
    assert abs(unlocked._due_s - (acted[-1] + 0.02) + 0.003) < 1e-4
    with pytest.raises(ValueError):
        SensorGate(0.0, 0.01)


def test_estop_latch_persists_across_instances(tmp_path):
    a = EstopLatch(tmp_path / "state")
    assert a.tripped() is None
    a.trip("operator pressed e-stop")
    b = EstopLatch(tmp_path / "state")
    assert b.tripped() == "operator pressed e-stop"
    b.clear()
    assert a.tripped() is None and EstopLatch(tmp_path / "state").tripped() is None


def test_latency_stats():
    s = LatencyStats("x", deadline_s=0.002)
    for v in [0.001] * 98 + [0.003, 0.010]:
        s.add(v)
    out = s.summary()
    assert out["n"] == 100 and out["p50_ms"] == pytest.approx(1.0) and out["max_ms"] == pytest.approx(10.0)
    assert out["misses"] == 2 and "misses(>2 ms)=2" in s.format()
    assert LatencyStats("e").summary()["n"] == 0


def test_latency_stats_ring_buffer_bounds_memory_and_keeps_all_time_counters():
    s = LatencyStats("x", deadline_s=0.002, capacity=8)
    values = [0.001 * (k + 1) for k in range(20)]  # 1 .. 20 ms
    for v in values:
        s.add(v)
    out = s.summary()
    assert len(s) == 20 and out["n"] == 20 and out["misses"] == 18  # all-time: every sample above 2 ms but two
    assert out["max_ms"] == pytest.approx(20.0) and out["mean_ms"] == pytest.approx(10.5)
    assert out["p50_ms"] == pytest.approx(np.percentile(np.arange(13, 21), 50))  # percentiles: the last 8 stored
    recent = s.summary(recent=3)  # wrapped buffer: the last 3 are 18, 19, 20 ms
    assert recent["n"] == 3 and recent["max_ms"] == pytest.approx(20.0) and recent["mean_ms"] == pytest.approx(19.0)
    assert s.summary(recent=6)["mean_ms"] == pytest.approx(17.5)  # 15..20 ms, across the wrap point
    assert "(percentiles over the last 8)" in s.format()
    with pytest.raises(ValueError, match="capacity"):
        LatencyStats("bad", capacity=0)


def test_state_builder_scatters_to_qpos_qvel(profile):
    model = mujoco.MjModel.from_xml_path(str(profile.mjcf_path()))
    sb = StateBuilder(model, ["hinge", "slider"])
    assert sb.build([0.5, 0.1], [2.0, 3.0]).tolist() == [0.1, 0.5, 3.0, 2.0]
    assert sb.names == ("slider_position", "hinge_position", "slider_velocity", "hinge_velocity")
    with pytest.raises(ValueError, match="every dof measured"):
        StateBuilder(model, ["slider"])


def test_lqr_observation_gain_balances_under_reality_randomization(profile):
    from robot_rl.envs import make

    K, dt = lqr_gain(profile)
    assert dt == profile.control_period_s and K.shape == (1, 4)
    env = make("robot_rl/CartpoleBalance-v0", randomization="reality", seed=0)
    W = observation_gain(K, profile, env.unwrapped.observation_builder.terms)
    assert W[0, 1] == 0.0  # the cos term
    obs, _ = env.reset(seed=1)
    for _ in range(250):
        obs, _, term, _, _ = env.step(np.clip(W @ obs / 10.0, -1, 1))
        assert not term
    assert abs(math.atan2(obs[2], obs[1])) < 0.1


def test_goal_conditioned_input_is_observation_then_goal():
    from robot_rl.deploy.policy_loop import GoalInputBuilder
    from robot_rl.envs import make
    from robot_rl.safety import SafetyFilter

    env = make("robot_rl/ArmReach-v0", seed=0)
    base = env.unwrapped
    obs, _ = env.reset(seed=0)
    builder = GoalInputBuilder(base.observation_builder, 3)
    assert builder.names[-3:] == ("desired_goal[0]", "desired_goal[1]", "desired_goal[2]")
    seen = []
    goal = obs["desired_goal"].astype(np.float64)
    loop = PolicyLoop(SafetyFilter(base.profile), builder, lambda x: seen.append(x) or np.zeros(base.model.nu),
                      goal=goal, control_period_s=base.profile.control_period_s)
    q, v = (a.copy() for a in base.measured_joints())
    for k in range(base.profile.safety.recover_after):
        loop.on_joint_state(base.profile.joint_names, q, v, [], stamp_s=0.01 * k, now_s=0.01 * k)
    loop.step(0.04)
    flat = np.concatenate([obs["observation"], obs["desired_goal"]])
    assert seen and np.allclose(seen[-1], flat, atol=1e-5)
    assert not loop.set_goal([0.1, 0.2]) and not loop.set_goal([0.1, np.nan, 0.0]) and loop.goals_rejected == 2
    with pytest.raises(ValueError, match="needs an initial goal of 3 values"):
        PolicyLoop(SafetyFilter(base.profile), builder, lambda x: x, control_period_s=0.02)


def test_env_reality_rewards_the_panda_delta_action_the_command_came_from():
    """sim_robot's task reward for a delta-target arm: the applied joint targets mapped back through the env's
    action map (offsets from the joints at the start of the step) give the action the command was made from, and
    ``reward_for`` sees it with the previous one."""
    from robot_rl.deploy.sim_plant import EnvReality
    from robot_rl.envs import make

    env = make("robot_rl/PandaReach-v0")
    env.reset(seed=0)
    base = env.unwrapped
    reality = EnvReality(env, np.random.default_rng(0))
    seen = []
    reward_for = base.reward_for
    base.reward_for = lambda a, last: seen.append((a.copy(), None if last is None else last.copy())) or \
        reward_for(a, last)
    p = SimPlant(base.profile, base.model, base.data, reality=reality)
    center, half = base.action_map()
    qadr = [base.model.jnt_qposadr[base.model.joint(j).id] for j in base.profile.command_joints]
    rng = np.random.default_rng(1)
    actions = rng.uniform(-0.8, 0.8, (5, len(qadr)))
    dt = base.control_dt
    p.advance(0.0)
    for k, a in enumerate(actions):
        t = k * dt
        assert p.on_command(center + base.data.qpos[qadr] + half * a, t)
        p.advance(t + dt - 1e-9)
    assert len(seen) == 5
    for k, (a, last) in enumerate(seen):
        np.testing.assert_allclose(a, actions[k], atol=1e-9)
        assert (last is None) if k == 0 else np.allclose(last, actions[k - 1])
