"""Rewards against their references: dm_control's tolerance/cartpole reward and Gymnasium's Pendulum-v1 cost."""

import math

import numpy as np
import pytest
from dm_control.utils import rewards as dm_rewards

import robot_rl.envs as E
from robot_rl.envs.rewards import elementwise, gaussian, quadratic, tolerance, wrapped_angle


def test_tolerance_matches_dm_control():
    x = np.linspace(-4, 4, 41)
    for kw in ({"margin": 2.0}, {"margin": 1.0, "sigmoid": "quadratic", "value_at_margin": 0.0},
               {"bounds": (-0.5, 0.5), "margin": 1.0}, {"margin": 0.0}):
        assert np.allclose(tolerance(x, **kw), dm_rewards.tolerance(x, **kw))
    # The term building blocks, on scalars and on arrays.
    assert np.allclose(gaussian(x, 2.0), dm_rewards.tolerance(x, margin=2.0), rtol=1e-14, atol=0)
    assert np.allclose(quadratic(x, 1.0), dm_rewards.tolerance(x, margin=1.0, sigmoid="quadratic", value_at_margin=0.0),
                       rtol=1e-14, atol=0)
    for v in (-3.0, -0.2, 0.0, 0.7, 5.0):
        assert gaussian(v, 2.0) == pytest.approx(dm_rewards.tolerance(v, margin=2.0))
        assert quadratic(v, 1.0) == pytest.approx(
            dm_rewards.tolerance(v, margin=1.0, sigmoid="quadratic", value_at_margin=0.0))
    a = np.linspace(-20, 20, 101)
    assert np.allclose(wrapped_angle(a), [math.atan2(math.sin(v), math.cos(v)) for v in a], rtol=0, atol=1e-12)


def _dm_cartpole_reward(x, angle, omega, u):
    upright = (math.cos(angle) + 1) / 2
    centered = (1 + dm_rewards.tolerance(x, margin=2)) / 2
    small_control = (4 + dm_rewards.tolerance(u, margin=1, value_at_margin=0, sigmoid="quadratic")) / 5
    small_velocity = (1 + dm_rewards.tolerance(omega, margin=5)) / 2
    return upright * small_control * small_velocity * centered


def test_cartpole_reward_is_dm_controls_and_bounded():
    env = E.make("CartpoleSwingup-v0", seed=0)
    u = env.unwrapped
    env.reset(seed=0)
    for a in (-1.0, -0.3, 0.0, 0.8):
        _, r, *_ = env.step(np.array([a], np.float32))
        x, angle = u.data.qpos
        omega = u.data.qvel[1]
        assert r == pytest.approx(_dm_cartpole_reward(x, angle, omega, a))
        assert 0.0 <= r <= 1.0
    u.set_state(np.zeros(4))  # upright, centered, still, zero control -> reward 1
    _, r, *_ = env.step(np.zeros(1, np.float32))
    assert r == pytest.approx(1.0, abs=1e-3)


def test_pendulum_reward_is_gymnasiums():
    env = E.make("PendulumSwingup-v0", seed=0)
    u = env.unwrapped
    env.reset(seed=0)
    _, r, *_ = env.step(np.array([0.5], np.float32))
    th = math.atan2(math.sin(u.data.qpos[0]), math.cos(u.data.qpos[0]))
    assert r == pytest.approx(-(th**2 + 0.1 * u.data.qvel[0] ** 2 + 0.001 * 1.0**2))


def test_pendulum_needs_pumping():
    # 2 N m cannot lift the 1 kg, 1 m rod statically (needs m g l/2 = 5 N m at horizontal).
    env = E.make("PendulumSwingup-v0", seed=0)
    u = env.unwrapped
    u.set_state(np.array([math.pi, 0.0]))
    best = math.pi
    for _ in range(100):
        env.step(np.ones(1, np.float32))
        best = min(best, abs(math.atan2(math.sin(u.data.qpos[0]), math.cos(u.data.qpos[0]))))
    assert best > 1.0


def test_arm_compute_reward_vectorized_and_gravity_compensated():
    env = E.make("ArmReach-v0", seed=0)
    u = env.unwrapped
    ag = np.zeros((4, 5, 3))
    dg = np.zeros((4, 5, 3))
    dg[0, 0, 0] = 0.1
    r = u.compute_reward(ag, dg, {})
    assert r.shape == (4, 5) and r[0, 0] == -1.0 and r[1, 1] == 0.0
    dense = E.make("ArmReach-v0", reward_type="dense", seed=0).unwrapped
    assert dense.compute_reward(ag, dg, {})[0, 0] == pytest.approx(-0.1)
    obs, _ = env.reset(seed=0)
    for _ in range(25):  # zero command on top of gravity compensation: the arm stays put
        obs, *_ = env.step(np.zeros(7, np.float32))
    assert np.abs(obs["observation"][7:]).max() < 1e-6


@pytest.mark.parametrize("reward_type", ["sparse", "dense"])
def test_arm_step_reward_is_compute_reward_of_the_true_end_effector(reward_type):
    # The step and compute_reward evaluate the same declared reward term: bit for bit, the
    # sign of a zero reward included, and is_success is ||ee - goal|| <= threshold; steps that reach the goal too.
    env = E.make("ArmReach-v0", reward_type=reward_type, distance_threshold=0.3, randomization="default", seed=1)
    u = env.unwrapped
    rng = np.random.default_rng(0)
    successes = 0
    for _ in range(300):
        _, r, te, tr, info = env.step(rng.uniform(-0.3, 0.3, 7).astype(np.float32))
        ee, goal = u.end_effector(), u._goal
        ref = float(u.compute_reward(ee, goal))
        assert r == ref and math.copysign(1.0, r) == math.copysign(1.0, ref)
        assert info["is_success"] == bool(np.linalg.norm(ee - goal) <= u.distance_threshold)
        successes += info["is_success"]
        if te or tr:
            env.reset()
    assert 0 < successes < 300


def _energy_pump(obs):
    """Bang-bang energy pumping with a PD catch near upright (sign conventions of sim/cartpole)."""
    x, c, s, xd, w = (float(v) for v in obs)
    energy = 0.5 * (0.1 / 3) * w * w + 0.1 * 9.81 * 0.5 * (c - 1.0)  # 0 at upright rest
    if c > 0.85:
        force = 40 * math.atan2(s, c) + 8 * w + x + 2 * xd
    else:
        force = -10 * np.sign(w * c) * (1 if energy < 0 else -1) - 2 * x - xd
    return np.array([np.clip(force / 10, -1, 1)], np.float32)


def test_cartpole_swingup_needs_pumping_but_is_feasible():
    env = E.make("CartpoleSwingup-v0", seed=0)
    obs, _ = env.reset(seed=0)
    up_at, ret = None, 0.0
    for t in range(500):
        obs, r, *_ = env.step(_energy_pump(obs))
        ret += r
        if up_at is None and obs[1] > 0.95:
            up_at = (t + 1) * env.unwrapped.control_dt
    assert up_at is not None and up_at < 3.0 and ret > 300
    # Full force one way (no pumping) never gets the pole up: the motor alone cannot flip it.
    env.reset(seed=0)
    best = -1.0
    for _ in range(100):
        obs, *_ = env.step(np.ones(1, np.float32))
        best = max(best, float(obs[1]))
    assert best < 0.5


def test_cartpole_rail_variant_ends_when_the_cart_leaves_the_rail():
    """CartpoleSwingupRail-v0 ends at |x| > 1.7 m (the end stops are at +-1.8 m); the suite's swing-up runs on."""
    env = E.make("CartpoleSwingupRail-v0", seed=0)
    env.reset(seed=0)
    xs, terminated, truncated = [], False, False
    while not (terminated or truncated):
        obs, _, terminated, truncated, _ = env.step(np.ones(1, np.float32))
        xs.append(float(obs[0]))
    assert terminated and not truncated and len(xs) < 100
    assert xs[-1] > 1.7 and max(xs[:-1]) <= 1.7
    suite = E.make("CartpoleSwingup-v0", seed=0)
    suite.reset(seed=0)
    assert not any(suite.step(np.ones(1, np.float32))[2] for _ in range(200))
    balance = E.make("CartpoleBalance-v0", seed=0, rail_limit=1.5)
    balance.reset(seed=0)
    balance.unwrapped.set_state(np.array([-1.49, 0.0, -1.0, 0.0]))
    assert balance.step(np.zeros(1, np.float32))[2]
    with pytest.raises(ValueError, match="rail_limit"):
        E.make("CartpoleSwingup-v0", rail_limit=0.0)


def test_elementwise_math_is_exact_and_nan_outside_the_domain():
    x = np.random.default_rng(0).normal(0, 50, 1000).tolist()
    assert [math.cos(v) for v in x] == elementwise(math.cos, x)
    out = elementwise(math.cos, [0.0, math.inf, math.nan, 1.0])
    assert out[0] == 1.0 and math.isnan(out[1]) and math.isnan(out[2]) and out[3] == math.cos(1.0)
    assert elementwise(math.atan2, [1.0, 0.0], [0.0, 1.0]) == [math.atan2(1.0, 0.0), 0.0]
    assert np.isnan(elementwise(math.exp, [1e6])[0])  # OverflowError -> NaN


def test_pendulum_torque_constant_is_the_mjcf_actuator_range():
    env = E.make("PendulumSwingup-v0")
    from robot_rl.envs.pendulum import MAX_TORQUE_NM

    assert list(env.unwrapped.model.actuator_ctrlrange[0]) == [-MAX_TORQUE_NM, MAX_TORQUE_NM]
