"""Public state API of the MuJoCo tasks (used by bag import / re-simulation, the sim robot, replay and the demo):
``set_joint_state``, ``qpos_from_joints``, ``reward_for``, ``package_observation``, ``randomization_info``,
``step_count``, ``joint_qpos_addresses`` / ``joint_qvel_addresses``."""

from __future__ import annotations

import numpy as np
import pytest

from robot_rl.envs import make


@pytest.mark.parametrize("env_id", ["robot_rl/CartpoleSwingup-v0", "robot_rl/Reacher2-v0", "robot_rl/ArmReach-v0"])
def test_set_joint_state_then_reward_and_observation_match_step(env_id):
    """Stepping, then putting a second env in the reached joint state, gives the same reward and observation."""
    env, twin = make(env_id, seed=1), make(env_id, seed=2)
    u, v = env.unwrapped, twin.unwrapped
    rng = np.random.default_rng(0)
    for _ in range(5):
        a = rng.uniform(-1, 1, size=env.action_space.shape)
        obs, reward, *_ = env.step(a)
        q, qd = u.measured_joints()
        v.set_joint_state(q, qd, u.goal)
        np.testing.assert_allclose(np.concatenate(v.measured_joints()), np.concatenate([q, qd]))
        assert v.reward_for(a) == pytest.approx(reward, rel=1e-9, abs=1e-12)
        flat = v.observation_builder.build(q, qd, u.goal)
        packed = v.package_observation(flat)
        if isinstance(obs, dict):
            for key in obs:
                np.testing.assert_allclose(packed[key], obs[key], rtol=1e-5, atol=1e-6, err_msg=key)
        else:
            np.testing.assert_allclose(packed, obs, rtol=1e-6)
    state = v.get_state()
    v.reward_for(np.zeros(env.action_space.shape))
    np.testing.assert_array_equal(v.get_state(), state)  # reward_for does not move the sim


def test_qpos_from_joints_single_and_batched():
    u = make("robot_rl/Reacher2-v0", seed=0).unwrapped
    n, nq = len(u.profile.joint_names), u.model.nq
    q = np.arange(1, n + 1, dtype=float)
    qpos = u.qpos_from_joints(q)
    assert qpos.shape == (nq,)
    np.testing.assert_array_equal(qpos[u.joint_qpos_addresses], q)
    others = np.setdiff1d(np.arange(nq), u.joint_qpos_addresses)
    np.testing.assert_array_equal(qpos[others], u.model.qpos0[others])
    batch = u.qpos_from_joints(np.stack([q, 2 * q, 3 * q]))
    assert batch.shape == (3, nq)
    np.testing.assert_array_equal(batch[2, u.joint_qpos_addresses], 3 * q)
    with pytest.raises(ValueError, match=r"qpos_from_joints.*profile order"):
        u.qpos_from_joints(np.zeros(n + 1))
    with pytest.raises(ValueError, match="qd must have shape"):
        u.set_joint_state(q, np.zeros(n + 2))


def test_addresses_are_copies_and_step_count():
    env = make("robot_rl/PendulumSwingup-v0", seed=0)
    u = env.unwrapped
    adr = u.joint_qpos_addresses
    adr[:] = 99
    assert not np.array_equal(u.joint_qpos_addresses, adr)
    assert u.step_count == 0
    env.step(np.zeros(env.action_space.shape))
    env.step(np.zeros(env.action_space.shape))
    assert u.step_count == 2
    env.reset(seed=3)
    assert u.step_count == 0


def test_randomization_info_is_the_sampled_values():
    env = make("robot_rl/CartpoleSwingup-v0", randomization="reality", seed=0)
    _, info = env.reset(seed=5)
    ri = env.unwrapped.randomization_info
    assert ri and ri == info["randomization"]
    ri.clear()
    assert env.unwrapped.randomization_info == info["randomization"]  # a copy
    _, info2 = env.reset(seed=6)
    assert env.unwrapped.randomization_info == info2["randomization"] != info["randomization"]
    off = make("robot_rl/CartpoleSwingup-v0", seed=0)
    assert off.unwrapped.randomization_info == {}


@pytest.mark.parametrize("num_workers", [1, 2])
def test_vector_env_exposes_randomization_info_per_env(num_workers):
    from robot_rl.envs.vector import make_vec

    vec = make_vec("robot_rl/CartpoleSwingup-v0", 3, seed=10, randomization="reality", num_workers=num_workers)
    try:
        vec.reset(seed=10)
        infos = vec.get_attr("randomization_info")
        assert len(infos) == 3 and all(infos)
        assert infos[0] != infos[1]
        single = make("robot_rl/CartpoleSwingup-v0", randomization="reality")
        _, info = single.reset(seed=11)
        assert infos[1] == info["randomization"]
    finally:
        vec.close()
