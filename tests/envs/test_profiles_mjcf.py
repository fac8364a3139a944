"""Robot profiles (hardware/*.yaml) agree with their MJCF: joint names and order, limits, command ranges."""

import math

import mujoco
import numpy as np
import pytest

import robot_rl.envs as E
from robot_rl.core.config import load_config
from robot_rl.core.profile import RobotProfile, actuator_for_joint, load_profile

# Every robot of the declared tasks of the registry, with one of its tasks; the position-controlled legged robots:
# tests/envs/test_locomotion.py.
ROBOTS = {E.task_spec(t).robot: t for t in reversed(list(E.TASKS)) if not E.is_batched(t)}


@pytest.mark.parametrize("robot", sorted(ROBOTS))
def test_profile_matches_mjcf(robot):
    profile = load_profile(robot)
    model = profile.load_model()  # (a robot from a package: its MJCF in our scene)
    position = profile.command_interface == "position"
    for j in profile.joints:
        jid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, j.name)
        assert jid >= 0, f"{robot}: profile joint {j.name} not in MJCF"
        if model.jnt_limited[jid]:
            assert (j.position_min, j.position_max) == pytest.approx(tuple(model.jnt_range[jid])), j.name
        else:
            assert math.isinf(j.position_min) and math.isinf(j.position_max), j.name
        if j.name in profile.command_joints:
            a = actuator_for_joint(model, j.name)
            limit = model.actuator_forcerange[a] if position else model.actuator_ctrlrange[a]
            assert j.effort_max == pytest.approx(max(abs(limit))), j.name
        else:
            assert math.isinf(j.effort_max)
    # Command joints in actuator order; command limits equal the ctrlrange.
    acts = [actuator_for_joint(model, n) for n in profile.command_joints]
    assert acts == list(range(model.nu))
    # Command limits equal the ctrlrange (effort) or the joint range (position targets).
    limits = model.jnt_range[model.actuator_trnid[:, 0]] if position else model.actuator_ctrlrange
    assert np.allclose(profile.command_min, limits[:, 0])
    assert np.allclose(profile.command_max, limits[:, 1])
    # The YAML's own command limits, when given, agree too.
    raw = load_config(RobotProfile, profile.mjcf_path().parents[2] / "hardware" / f"{robot}.yaml")
    if raw.command_min:
        assert np.allclose(raw.command_min, profile.command_min)


@pytest.mark.parametrize("robot", sorted(ROBOTS))
def test_env_uses_profile_joint_order(robot):
    env = E.make(ROBOTS[robot], seed=0)
    u = env.unwrapped
    assert u.profile.name == robot
    assert u.observation_builder.joint_names == u.profile.joint_names
    assert env.action_space.shape == (len(u.profile.command_joints),)
    if u.profile.command_interface == "position":  # targets: tests/envs/test_panda.py
        return
    # Action +1 maps to the upper command limit in robot units.
    env.step(np.ones(env.action_space.shape, np.float32))
    assert np.allclose(u.data.ctrl, u.profile.command_max)
    env.step(-np.ones(env.action_space.shape, np.float32))
    assert np.allclose(u.data.ctrl, u.profile.command_min)
    # Out-of-range actions: MuJoCo clamps ctrl to the ctrlrange, so the applied force is the limit (gear 1 motors).
    env.step(3 * np.ones(env.action_space.shape, np.float32))
    assert np.allclose(u.data.actuator_force, u.profile.command_max)
    env.step(-3 * np.ones(env.action_space.shape, np.float32))
    assert np.allclose(u.data.actuator_force, u.profile.command_min)


def test_arm_effort_limits_are_pandas():
    p = load_profile("arm7")
    assert [j.effort_max for j in p.joints] == [87.0] * 4 + [12.0] * 3
