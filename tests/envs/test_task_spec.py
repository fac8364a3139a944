"""Task declarations (robot_rl.envs.task): validation, one reward for every step path, a new task in a few lines."""

import math

import numpy as np
import pytest

import robot_rl.envs as E
from robot_rl.core import mujoco_jit
from robot_rl.envs.base import MujocoTaskEnv
from robot_rl.envs.cartpole import OBSERVATION, task
from robot_rl.envs.rewards import gaussian
from robot_rl.envs.task import TaskSpec, Term, action, evaluate_terms, param, qpos, qvel
from robot_rl.envs.vector import make_vec


@pytest.mark.parametrize("env_id", [t for t in E.TASKS if not E.is_batched(t)])
def test_step_reward_is_the_declared_terms(env_id):
    # The step's reward / termination / success equal the declaration's terms evaluated directly (plain numpy on
    # the true state and the action), for every registered task, and terms are named.
    env = E.make(env_id, seed=0)
    u = env.unwrapped
    spec = u.task
    assert spec.describe()["reward"] and all(t.name for t in spec.reward)
    rng = np.random.default_rng(0)
    rewards = []
    prev = np.zeros(env.action_space.shape)  # (for action-rate terms: the previous action, 0 after a reset)
    for _ in range(60):
        a = rng.uniform(-1, 1, env.action_space.shape).astype(np.float32)
        _, r, te, tr, info = env.step(a)
        ref_r, ref_te, ref_s = evaluate_terms(spec, u.terms.input_values(a.astype(np.float64), prev))
        assert r == pytest.approx(ref_r, rel=1e-12, abs=1e-12)
        assert te == ref_te and info.get("is_success") == ref_s
        rewards.append(r)
        prev = a.astype(np.float64)
        if te or tr:
            env.reset()
            prev = np.zeros(env.action_space.shape)
    assert len(set(rewards)) > 1 or spec.name == "ArmReach"  # (the sparse arm reward is -1 until the goal)


def test_declaration_errors_name_what_is_wrong():
    def bad(angle, velocity):
        return angle + velocity

    def cos_a(angle):
        return np.cos(angle)

    with pytest.raises(ValueError, match=r"term 'bad' reads \['velocity'\], which are not declared inputs"):
        TaskSpec(name="t", robot="cartpole", frame_skip=2, max_episode_steps=10, observation=OBSERVATION,
                 inputs={"angle": qpos("hinge")}, reward=(Term("bad", bad),), initial_state=lambda env, rng: None)
    with pytest.raises(ValueError, match="a product reward takes no weights"):
        TaskSpec(name="t", robot="cartpole", frame_skip=2, max_episode_steps=10, observation=OBSERVATION,
                 inputs={"angle": qpos("hinge")}, reward=(Term("a", cos_a, 2.0),), combine="product",
                 initial_state=lambda env, rng: None)
    with pytest.raises(ValueError, match="input kind 'torque'"):
        from robot_rl.envs.task import Input

        Input("torque", 0)
    spec = TaskSpec(name="t", robot="cartpole", frame_skip=2, max_episode_steps=10, observation=OBSERVATION,
                    inputs={"angle": qpos("no_such_joint")}, reward=(Term("a", cos_a),),
                    initial_state=lambda env, rng: None)
    with pytest.raises(KeyError, match="input 'angle' reads joint 'no_such_joint'"):
        MujocoTaskEnv(spec)
    with pytest.raises(TypeError, match="robot_rl/CartpoleSwingup-v0: .*unexpected keyword argument 'swing'"):
        E.make("CartpoleSwingup-v0", swing=True)


# A new task, declared here in a few lines: keep the cart near a commanded position with the pole up.
def near_target(x, target_x):
    return gaussian(x - target_x, 0.5)


def pole_up(angle):
    return (np.cos(angle) + 1.0) / 2.0


def effort(u):
    return u * u


def off_rail(x):
    return np.abs(x) > 1.5


def _start(env, rng):
    env.data.qpos[env.joint_qpos_addresses] = [rng.uniform(-0.5, 0.5), rng.uniform(-0.1, 0.1)]
    return None


CENTER = TaskSpec(
    name="CartpoleCenter", robot="cartpole", frame_skip=2, max_episode_steps=300, observation=OBSERVATION,
    inputs={"x": qpos("slider"), "angle": qpos("hinge"), "omega": qvel("hinge"), "u": action(0),
            "target_x": param(0.3)},
    reward=(Term("near_target", near_target, 1.0), Term("pole_up", pole_up, 0.5), Term("effort", effort, -0.01)),
    terminations=(Term("off_rail", off_rail),), initial_state=_start)


@pytest.mark.parametrize("compiled", [None, False])
def test_a_new_declared_task_runs_on_every_step_path(compiled):
    env = MujocoTaskEnv(CENTER, seed=3, randomization="default", compiled_step=compiled)
    assert env.compiled_step == (compiled is None and mujoco_jit.AVAILABLE)
    obs, _ = env.reset(seed=3)
    assert obs.shape == (5,)
    a = np.array([0.4], np.float32)
    _, r, te, *_ = env.step(a)
    x, angle = env.data.qpos
    ref = 1.0 * near_target(x, 0.3) + 0.5 * pole_up(angle) - 0.01 * env._a_out[0] ** 2 if env.compiled_step else None
    if ref is not None:
        assert r == pytest.approx(ref, rel=1e-12)
    assert 0.0 < r < 1.5 and te is False
    # Far off the rail: the declared termination ends the episode.
    env.data.qpos[0] = 1.6
    *_, te, _, _ = env.step(a)
    assert te is True


def test_a_new_registered_task_batches_like_single_envs():
    # One registry entry makes the declaration a task like the shipped ones: make, gymnasium.make and the batched
    # vector env (equal to N single envs: observations exactly, rewards of the compiled batch kernel exactly).
    import gymnasium as gym

    if "robot_rl/CartpoleCenter-v0" not in E.TASKS:
        E.register("robot_rl/CartpoleCenter-v0", lambda: CENTER)
    with pytest.raises(ValueError, match="already registered"):
        E.register("robot_rl/CartpoleCenter-v0", lambda: CENTER)
    with pytest.raises(ValueError, match="must look like"):
        E.register("CartpoleCenter", lambda: CENTER)
    assert gym.make("robot_rl/CartpoleCenter-v0").unwrapped.task is CENTER
    n, seed = 4, 5
    vec = make_vec("CartpoleCenter-v0", n, seed=seed, backend="batched")
    singles = [E.make("CartpoleCenter-v0", seed=seed + i) for i in range(n)]
    obs, _ = vec.reset(seed=seed)
    assert np.array_equal(obs, np.stack([e.reset(seed=seed + i)[0] for i, e in enumerate(singles)]))
    rng = np.random.default_rng(1)
    for _ in range(50):
        a = rng.uniform(-1, 1, (n, 1)).astype(np.float32)
        obs, rew, term, trunc, _ = vec.step(a)
        for i, e in enumerate(singles):
            o, r, te, tr, _ = e.step(a[i])
            assert np.array_equal(obs[i], o) and rew[i] == pytest.approx(r, rel=1e-12) and term[i] == te
            if te or tr:
                e.reset()
    vec.close()


def test_registry_builds_specs_with_their_options():
    bal = E.task_spec("CartpoleBalance-v0", fall_angle=0.5)
    assert bal.options == {"swingup": False, "fall_angle": 0.5, "rail_limit": None}
    assert [t.name for t in bal.terminations] == ["fallen"]
    assert task(swingup=True).terminations == ()
    rail = E.task_spec("CartpoleSwingupRail-v0")
    assert rail.options["rail_limit"] == 1.7 and [t.name for t in rail.terminations] == ["off_rail"]
    assert E.make("CartpoleBalance-v0", fall_angle=None).unwrapped.task.terminations == ()
    assert math.isclose(E.make("Reacher2-v0", success_distance=0.05).unwrapped.success_distance, 0.05)


@pytest.mark.skipif(not mujoco_jit.AVAILABLE, reason="numba is not installed: the evaluator is plain Python")
@pytest.mark.parametrize("env_id", [t for t in E.TASKS if not E.is_batched(t) and E.task_spec(t).scalar])
def test_the_reward_evaluator_is_compiled_when_the_env_is_made(env_id):
    # A real-time caller (the sim_robot node's physics loop calls reward_for every control step) must not pay numba's
    # ~1 s compile on its first reward: the env compiles the evaluator while it is constructed.
    ev = E.make(env_id).unwrapped.terms._eval
    assert len(ev.signatures) == 1
