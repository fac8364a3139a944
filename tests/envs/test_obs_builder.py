"""One observation contract: the builder alone (numpy + mujoco) reproduces the env's observation."""

import subprocess
import sys

import numpy as np
import pytest

import robot_rl.envs as E
from robot_rl.envs.obs import ObservationBuilder


@pytest.mark.parametrize("env_id", [t for t in E.TASKS if not E.is_batched(t)])
def test_builder_reproduces_env_observation(env_id):
    env = E.make(env_id, seed=0)
    u = env.unwrapped
    builder = E.observation_builder(env_id)  # a fresh builder, as the ROS node would get it
    assert builder.names == u.obs_names
    obs, _ = env.reset(seed=4)
    for _ in range(10):
        q, qd = u.measured_joints()
        flat = obs["observation"] if isinstance(obs, dict) else obs
        assert np.array_equal(builder.build(q, qd, u.goal), flat)
        if isinstance(obs, dict):
            site = u.task.inputs[u.task.achieved_goal].arg
            assert np.allclose(builder.site_position(q, site), obs["achieved_goal"], atol=1e-6)
            assert np.array_equal(obs["desired_goal"], u.goal.astype(np.float32))
        obs, *_ = env.step(env.action_space.sample())


def test_site_terms_match_mujoco_forward_kinematics():
    env = E.make("Reacher2-v0", seed=1)
    u = env.unwrapped
    obs, _ = env.reset(seed=1)
    tip = u.data.site_xpos[u.model.site("fingertip").id]
    names = list(u.obs_names)
    dx = obs[names.index("fingertip_minus_target_x")]
    assert dx == pytest.approx(tip[0] - u.goal[0], abs=1e-6)
    assert obs[names.index("target_y")] == pytest.approx(u.goal[1], abs=1e-6)


def test_builder_validates_inputs_and_layout():
    b = ObservationBuilder(["a", "b"], [("a_pos", "pos", "a"), ("b_sin", "sin", "b"), ("g0", "goal", 0)],
                           goal_dim=1, units=["m", "1", "m"])
    out = b.build(np.array([1.0, np.pi / 2]), np.zeros(2), np.array([5.0]))
    assert out.dtype == np.float32 and np.allclose(out, [1.0, 1.0, 5.0])
    assert b.describe()[0] == {"name": "a_pos", "kind": "pos", "ref": "a", "unit": "m"}
    with pytest.raises(ValueError, match="shape"):
        b.build(np.zeros(3), np.zeros(2), np.zeros(1))
    with pytest.raises(ValueError, match="goal"):
        b.build(np.zeros(2), np.zeros(2))
    with pytest.raises(KeyError, match="joint 'c'"):
        ObservationBuilder(["a"], [("x", "pos", "c")])
    with pytest.raises(ValueError, match="unknown kind"):
        ObservationBuilder(["a"], [("x", "acc", "a")])
    with pytest.raises(ValueError, match="duplicate"):
        ObservationBuilder(["a"], [("x", "pos", "a"), ("x", "vel", "a")])
    # Fresh arrays: a later build does not overwrite an earlier result.
    first = b.build(np.array([1.0, 0.0]), np.zeros(2), np.array([5.0]))
    b.build(np.array([2.0, 0.0]), np.zeros(2), np.array([6.0]))
    assert first[0] == 1.0


def test_builder_and_envs_import_without_torch():
    code = ("import sys; import robot_rl.envs.obs, robot_rl.envs.base, robot_rl.envs.cartpole; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_batch_and_list_builds_are_bit_identical_to_build():
    # Layout with every non-FK kind, a joint without trig terms, a goal, and joints in a permuted order.
    b = ObservationBuilder(["a", "b", "c"], [("c_cos", "cos", "c"), ("a_pos", "pos", "a"), ("g1", "goal", 1),
                                             ("c_sin", "sin", "c"), ("b_vel", "vel", "b"), ("a_sin", "sin", "a"),
                                             ("g0", "goal", 0), ("c_pos", "pos", "c")], goal_dim=2)
    rng = np.random.default_rng(0)
    q, qd, goals = rng.normal(0, 4, (64, 3)), rng.normal(0, 9, (64, 3)), rng.normal(0, 1, (64, 2))
    rows = np.stack([b.build(q[i], qd[i], goals[i]) for i in range(64)])
    batch = b.build_batch(q, qd, goals)
    assert batch.dtype == np.float32 and batch.shape == (64, 8)
    assert batch.tobytes() == rows.tobytes()
    lists = np.stack([b.build_lists(q[i].tolist(), qd[i].tolist(), goals[i]) for i in range(64)])
    assert lists.tobytes() == rows.tobytes()
    with pytest.raises(ValueError, match=r"\(64, 2\)"):
        b.build_batch(q, qd, goals[:, :1])
    with pytest.raises(ValueError, match="shape"):
        b.build_batch(q[:, :2], qd[:, :2], goals)
    fk = E.observation_builder("Reacher2-v0")
    assert not fk.batchable
    with pytest.raises(ValueError, match="forward-kinematics"):
        fk.build_batch(np.zeros((2, 2)), np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="forward-kinematics"):
        fk.build_lists([0.0, 0.0], [0.0, 0.0], np.zeros(2))
