"""A diverged step is reported (physics_error, terminated) the same step, never silently reset."""

import numpy as np
import pytest

import robot_rl.envs as E

MUJOCO_TASKS = [t.removeprefix("robot_rl/") for t in E.TASKS if not E.is_batched(t)]  # every declared task


@pytest.mark.parametrize("env_id", MUJOCO_TASKS)
def test_nan_state_detected(env_id):
    env = E.make(env_id, seed=0)
    env.reset()
    env.unwrapped.data.qvel[0] = np.nan
    obs, r, te, tr, info = env.step(np.zeros(env.action_space.shape, np.float32))
    assert info["physics_error"] is True and te is True and r == 0.0
    for part in obs.values() if isinstance(obs, dict) else [obs]:
        assert np.isfinite(part).all()
    # The next reset starts a clean episode.
    _, info = env.reset()
    _, _, te, _, info = env.step(np.zeros(env.action_space.shape, np.float32))
    assert info["physics_error"] is False


@pytest.mark.parametrize("env_id", MUJOCO_TASKS)
def test_huge_external_force_detected(env_id):
    env = E.make(env_id, seed=0)
    env.reset()
    u = env.unwrapped
    body = u.model.jnt_bodyid[u.model.joint(u.profile.joint_names[-1]).id]  # the last measured joint's link
    u.data.xfrc_applied[body, :3] = 1e30
    errors = []
    for _ in range(5):
        *_, te, _, info = env.step(np.zeros(env.action_space.shape, np.float32))
        errors.append(info["physics_error"])
        if te:
            break
    assert errors[-1] is True and te


def test_non_finite_action_is_a_physics_error_not_a_crash():
    env = E.make("CartpoleSwingup-v0", seed=0)
    env.reset()
    _, _, te, _, info = env.step(np.array([np.nan], np.float32))
    assert te and info["physics_error"] and info["error"] == "non-finite action"


def test_dmc_physics_error():
    env = E.make("dmc-cartpole-swingup-v0", seed=0)
    env.reset()
    env.unwrapped.data.qvel[0] = np.inf
    _, _, te, _, info = env.step(np.zeros(1, np.float32))
    assert te and info["physics_error"]


def test_reality_randomization_rarely_diverges():
    # docs/reliability.md, scenario 11 (short form): full "reality" ranges, random actions, no divergence.
    for env_id in MUJOCO_TASKS:
        env = E.make(env_id, randomization="reality", seed=0, max_episode_steps=60)
        errors = 0
        for ep in range(3):
            env.reset(seed=ep)
            while True:
                *_, te, tr, info = env.step(env.action_space.sample())
                errors += info["physics_error"]
                if te or tr:
                    break
        assert errors == 0, env_id
