"""Every task x randomization: determinism per seed, spaces, non-aliased observations, info contract, time limit."""

import gymnasium as gym
import numpy as np
import pytest

import robot_rl.envs as E

TASK_IDS = [*(t for t in E.TASKS if not E.is_batched(t)), "robot_rl/dmc-cartpole-swingup-v0"]  # every declared
# (MujocoTaskEnv) task and a dm_control one; batched legged tasks: tests/envs/test_locomotion.py
RANDOMIZATION = [None, "default", "reality"]


def _obs_equal(a, b):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    return np.array_equal(a, b)


def _copy(o):
    return {k: v.copy() for k, v in o.items()} if isinstance(o, dict) else o.copy()


def _rollout(env_id, randomization, seed, n=25):
    env = E.make(env_id, randomization=randomization, seed=seed)
    act_rng = np.random.default_rng(123)
    obs, info = env.reset(seed=seed)
    trace = [(_copy(obs), dict(info["randomization"]))]
    for _ in range(n):
        a = act_rng.uniform(-1, 1, env.action_space.shape).astype(np.float32)
        o, r, te, tr, info = env.step(a)
        trace.append((_copy(o), r, te, tr, dict(info["randomization"])))
    env.close()
    return trace


def _same(t1, t2):
    for a, b in zip(t1, t2):
        if not _obs_equal(a[0], b[0]) or a[1:] != b[1:]:
            return False
    return len(t1) == len(t2)


@pytest.mark.parametrize("randomization", RANDOMIZATION)
@pytest.mark.parametrize("env_id", TASK_IDS)
def test_same_seed_same_rollout_different_seed_differs(env_id, randomization):
    a = _rollout(env_id, randomization, seed=7)
    b = _rollout(env_id, randomization, seed=7)
    c = _rollout(env_id, randomization, seed=8)
    assert _same(a, b)
    assert not _obs_equal(a[0][0], c[0][0]), "different seeds gave the same initial observation"
    if randomization is not None:
        assert a[0][1] and a[0][1] != c[0][1], "different seeds gave the same randomization"


@pytest.mark.parametrize("randomization", RANDOMIZATION)
@pytest.mark.parametrize("env_id", TASK_IDS)
def test_spaces_info_and_aliasing(env_id, randomization):
    env = E.make(env_id, randomization=randomization, seed=0)
    u = env.unwrapped
    obs, info = env.reset(seed=1)
    assert info["physics_error"] is False and isinstance(info["randomization"], dict)
    assert env.observation_space.contains(obs)
    flat = obs["observation"] if isinstance(obs, dict) else obs
    assert flat.dtype == np.float32 and flat.shape == (len(u.obs_names),)
    assert env.action_space.dtype == np.float32
    assert np.all(env.action_space.low == -1) and np.all(env.action_space.high == 1)
    for k in ("model", "data", "profile", "control_dt", "frame_skip", "obs_names", "observation_builder",
              "randomization_enabled"):
        assert hasattr(u, k), k
    assert u.randomization_enabled is (randomization is not None)
    prev = _copy(obs)
    prev_ref = obs
    for _ in range(5):
        obs, r, te, tr, info = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs)
        assert isinstance(r, float) and np.isfinite(r)
        assert info["physics_error"] is False and not te or env_id.endswith("Balance-v0")
        # Returned arrays are fresh: the previous observation was not overwritten by this step.
        assert _obs_equal(prev_ref, prev)
        prev, prev_ref = _copy(obs), obs
    state = u.get_state()
    assert state.shape == (u.model.nq + u.model.nv,)
    u.set_state(state)
    assert np.array_equal(u.get_state(), state)
    with pytest.raises(ValueError, match="shape"):
        u.set_state(state[:-1])
    with pytest.raises(ValueError, match="action"):
        env.step(np.zeros(env.action_space.shape[0] + 1))
    env.close()


@pytest.mark.parametrize("env_id", ["robot_rl/Reacher2-v0", "robot_rl/ArmReach-v0", "robot_rl/PendulumSwingup-v0"])
def test_success_flag_present(env_id):
    env = E.make(env_id, seed=0)
    _, info = env.reset()
    assert isinstance(info["is_success"], bool)
    _, _, _, _, info = env.step(env.action_space.sample())
    assert isinstance(info["is_success"], bool)


@pytest.mark.parametrize("env_id", TASK_IDS)
def test_truncated_at_time_limit(env_id):
    env = E.make(env_id, seed=0, max_episode_steps=7)
    env.reset()
    for t in range(7):
        _, _, te, tr, _ = env.step(np.zeros(env.action_space.shape, np.float32))
        if te:
            break
        assert tr is (t == 6)


def test_control_periods_and_episode_lengths():
    expect = {"CartpoleSwingup-v0": (0.02, 2, 500), "PendulumSwingup-v0": (0.05, 5, 200),
              "Reacher2-v0": (0.02, 2, 100), "ArmReach-v0": (0.02, 10, 100)}
    for env_id, (dt, skip, steps) in expect.items():
        u = E.make(env_id).unwrapped
        assert u.control_dt == pytest.approx(dt) and u.frame_skip == skip and u.max_episode_steps == steps
        assert u.profile.control_period_s == pytest.approx(dt)


def test_gymnasium_registration_and_unknown_id():
    env = gym.make("robot_rl/PendulumSwingup-v0")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (3,)
    assert "robot_rl/dmc-cheetah-run-v0" in gym.registry
    with pytest.raises(KeyError, match="unknown env id"):
        E.make("robot_rl/Nope-v0")
    with pytest.raises(ValueError, match="dmc-<domain>-<task>-v0"):
        E.make("robot_rl/dmc-cheetah-v1")
    assert E.parse_dmc_id("robot_rl/dmc-ball_in_cup-catch-v0") == ("ball_in_cup", "catch")


def test_cartpole_layout_and_start_states():
    sw = E.make("CartpoleSwingup-v0", seed=0)
    assert sw.unwrapped.obs_names == ("cart_position", "pole_angle_cos", "pole_angle_sin", "cart_velocity",
                                      "pole_angular_velocity")
    obs, _ = sw.reset(seed=0)
    assert obs[1] < -0.99  # hanging down
    bal = E.make("CartpoleBalance-v0", seed=0)
    obs, _ = bal.reset(seed=0)
    assert obs[1] > 0.99  # near upright
    # Balance terminates once the pole falls past 0.8 rad; without fall_angle it runs to the limit.
    for _ in range(500):
        _, _, te, tr, _ = bal.step(np.ones(1, np.float32))
        if te or tr:
            break
    assert te and not tr
    full = E.make("CartpoleBalance-v0", seed=0, fall_angle=None)
    full.reset(seed=0)
    n = 0
    while True:
        _, _, te, tr, _ = full.step(np.ones(1, np.float32))
        n += 1
        if te or tr:
            break
    assert n == 500 and tr and not te


@pytest.mark.filterwarnings("ignore:.*Box observation space (minimum|maximum) value is")
@pytest.mark.parametrize("randomization", [None, "reality"])
@pytest.mark.parametrize("env_id", TASK_IDS)
def test_gymnasium_env_checker(env_id, randomization):
    from gymnasium.utils.env_checker import check_env

    # Seeding, space containment, no data shared between returned infos/observations (unbounded Box: warning only).
    check_env(E.make(env_id, randomization=randomization).unwrapped, skip_render_check=True)


def test_render_rgb_array():
    env = E.make("CartpoleSwingup-v0", seed=0, render_mode="rgb_array")
    env.reset()
    frame = env.render()
    assert frame.shape == (240, 320, 3) and frame.dtype == np.uint8 and frame.std() > 1.0
    env.close()
    assert E.make("CartpoleSwingup-v0").render() is None  # no render_mode: nothing rendered
