"""The Franka Panda (hardware/panda.yaml, Menagerie's model from gym-hil) and its reach task PandaReach-v0."""

import dataclasses
import math

import mujoco
import numpy as np
import pytest

import robot_rl.envs as E
from robot_rl.core.profile import load_profile
from robot_rl.envs import panda


@pytest.fixture(scope="module")
def profile():
    return load_profile("panda")


def test_profile_is_the_datasheet_and_menageries_gains(profile):
    assert profile.command_interface == "position" and profile.controller == "forward_position_controller"
    assert profile.command_joints == tuple(f"joint{i}" for i in range(1, 8))
    assert [j.effort_max for j in profile.joints] == [87.0] * 4 + [12.0] * 3
    assert [j.velocity_max for j in profile.joints] == [2.175] * 4 + [2.61] * 3
    assert profile.joint("joint4").position_max == -0.0698 and profile.joint("joint6").position_max == 3.7525
    assert profile.kp == (4500.0, 4500.0, 3500.0, 3500.0, 2000.0, 2000.0, 2000.0)
    assert profile.kd == (450.0, 450.0, 350.0, 350.0, 200.0, 200.0, 200.0)
    assert profile.topics.commands == "/forward_position_controller/commands" and profile.topics.goal == "/goal"
    assert tuple(profile.standing_pose) == panda.HOME  # the posture term's home is the profile's
    # The safety filter's rate limit stays below the joints' speed limit.
    assert profile.safety.max_command_rate < min(j.velocity_max for j in profile.joints)


def test_model_servos_rigid_gripper_and_frames(profile):
    m = profile.load_model()
    d = mujoco.MjData(m)
    assert m.nq == m.nv == m.nu == 7 and m.neq == 0 and m.ntendon == 0  # the gripper's joints are gone
    for k in range(7):  # MuJoCo position servos at the profile's gains and torque limits
        assert m.actuator_gainprm[k, 0] == profile.kp[k]
        assert tuple(m.actuator_biasprm[k, :3]) == (0.0, -profile.kp[k], -profile.kd[k])
        assert m.actuator_forcerange[k, 1] == profile.joints[k].effort_max
    gripper = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, "base_mount")
    assert m.body_subtreemass[gripper] > 1.0  # its mass stays (a payload)
    mujoco.mj_forward(m, d)
    assert np.allclose(d.body(profile.base_frame).xpos, 0.0)  # goals in the base frame = world frame
    d.qpos[:] = profile.standing_pose
    mujoco.mj_forward(m, d)
    assert d.site(profile.ee_site).xpos == pytest.approx([0.5545, 0.0, 0.4757], abs=1e-3)  # gripper down, in front


def test_profile_names_are_checked(profile):
    with pytest.raises(KeyError, match="fixed_bodies 'hand'"):
        dataclasses.replace(profile, fixed_bodies=("hand",)).load_model()
    with pytest.raises(KeyError, match="ee_site"):
        dataclasses.replace(profile, ee_site="tcp").load_model()
    with pytest.raises(ValueError, match="fixed_bodies must be distinct"):
        dataclasses.replace(profile, fixed_bodies=("base_mount", "base_mount"))


def test_absolute_actions_are_rate_limited_targets_around_home():
    env = E.make("PandaReach-v0", seed=0, action="absolute")
    u = env.unwrapped
    home = np.asarray(u.profile.standing_pose)
    center, half = u.action_map()
    assert np.allclose(center, home) and np.allclose(half, 1.0)
    assert np.allclose(u.model.actuator_ctrlrange[:, 0], center - half)
    q0 = u.data.qpos.copy()
    env.step(np.ones(7, np.float32))
    step = u.profile.safety.max_command_rate * u.control_dt
    assert np.allclose(u.data.ctrl, q0 + step)  # the safety filter's ramp from the measured position
    for _ in range(100):
        env.step(np.ones(7, np.float32))
    assert np.allclose(u.data.ctrl, center + half)  # then the target, never beyond the action box
    assert np.abs(u.data.qvel).max() < 1.1 * u.profile.safety.max_command_rate
    q = np.asarray(u.profile.standing_pose) + 0.2
    u.set_joint_state(q, np.zeros(7), goal=u.goal)  # (log replay, deploy): the ramp starts from there
    env.step(np.ones(7, np.float32))
    assert np.allclose(u.data.ctrl, q + step)
    assert u.action_reference() is None


def test_delta_actions_are_offsets_from_the_observed_joints():
    env = E.make("PandaReach-v0", seed=0)
    u = env.unwrapped
    assert u.action == "delta" and u.action_scale == 0.05
    center, half = u.action_map()
    assert np.all(center == 0.0) and np.allclose(half, 0.05)
    assert u.action_reference() == [f"joint{i}_position" for i in range(1, 8)]
    p = u.profile
    assert np.allclose(u.model.actuator_ctrlrange.T, [p.command_min, p.command_max])  # any target in the limits
    obs, _ = env.reset(seed=4)
    a = np.array([0.2, -0.2, 0.1, 0.0, 0.3, -0.1, 0.05])
    lo, hi = np.asarray(p.command_min), np.asarray(p.command_max)
    step = p.safety.max_command_rate * u.control_dt
    for _ in range(5):
        q_seen = obs["observation"][:7].astype(np.float64)
        prev = u._prev_target.copy()  # (at reset: the true position, where the safety filter's ramp starts)
        obs, *_ = env.step(a.astype(np.float32))
        expected = np.clip(np.clip(q_seen + 0.05 * a, lo, hi), prev - step, prev + step)
        assert np.allclose(u.data.ctrl, expected, atol=1e-6)
    q = hi - 0.01  # near the upper limits: the target stays inside them
    u.set_joint_state(q, np.zeros(7), goal=u.goal)
    obs, *_ = env.step(np.ones(7, np.float32))
    assert np.all(u.data.ctrl <= hi) and np.allclose(u.data.ctrl, hi, atol=1e-3)
    with pytest.raises(ValueError, match="action must be one of"):
        E.make("PandaReach-v0", action="velocity")


def test_holds_a_target_with_gravity_compensation():
    env = E.make("PandaReach-v0", seed=0)  # delta actions: a = 0 commands the observed position
    obs, _ = env.reset(seed=3)
    q0 = obs["observation"][:7].copy()
    a = np.zeros(7)
    for _ in range(50):  # 1 s commanding the start pose
        obs, *_ = env.step(a.astype(np.float32))
    assert np.abs(obs["observation"][:7] - q0).max() < 1e-4  # no sag under gravity
    assert np.abs(obs["observation"][7:14]).max() < 1e-3


def _ik(env, goal, iters=300):
    m, d = env.model, mujoco.MjData(env.model)
    lo, hi = m.actuator_ctrlrange.T
    q = np.asarray(env.profile.standing_pose, dtype=np.float64)
    sid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, panda.EE_SITE)
    jac = np.zeros((3, m.nv))
    for _ in range(iters):
        d.qpos[:] = q
        mujoco.mj_kinematics(m, d)
        mujoco.mj_comPos(m, d)
        err = goal - d.site_xpos[sid]
        if np.linalg.norm(err) < 1e-3:
            break
        mujoco.mj_jacSite(m, d, jac, None, sid)
        q = np.clip(q + 0.5 * jac.T @ np.linalg.solve(jac @ jac.T + 1e-3 * np.eye(3), err), lo, hi)
    return q, float(np.linalg.norm(err))


def test_every_goal_is_reachable_within_the_action_box():
    u = E.make("PandaReach-v0", seed=0).unwrapped
    corners = [panda.GOAL_LOW + (panda.GOAL_HIGH - panda.GOAL_LOW) * np.array(c) for c in np.ndindex(2, 2, 2)]
    goals = corners + [u.reset()[0]["desired_goal"].astype(np.float64) for _ in range(40)]
    for g in goals:
        assert np.all(g >= panda.GOAL_LOW - 1e-6) and np.all(g <= panda.GOAL_HIGH + 1e-6)
        q, err = _ik(u, g)
        assert err < 2e-3, (g, err)  # IK inside the joint-target box reaches it


def test_reward_terms_and_success():
    env = E.make("PandaReach-v0", seed=0)
    u = env.unwrapped
    assert [t.name for t in u.task.reward] == ["distance", "precision", "reached", "effort", "posture", "action_rate",
                                               "speed"]
    assert [t.weight for t in u.task.reward] == [-1.0, 1.0, 1.0, -panda.EFFORT_WEIGHT, -panda.POSTURE_WEIGHT,
                                                 -panda.RATE_WEIGHT, -panda.SPEED_WEIGHT]
    assert [t.name for t in u.terms.goal_terms()] == ["distance", "precision", "reached"]
    ag, dg = np.zeros((2, 3)), np.array([[0.1, 0.0, 0.0], [0.0, 0.01, 0.0]])
    assert u.compute_reward(ag, dg, {}) == pytest.approx([-0.1 + 1 - math.tanh(10), 1.0 - 0.01 + 1 - math.tanh(1)])
    sparse = E.make("PandaReach-v0", reward_type="sparse").unwrapped
    assert list(sparse.compute_reward(ag, dg, {})) == [-1.0, 0.0]
    # Step reward = compute_reward of the true end effector (the goal terms) + the effort cost of the action + the
    # posture cost of the joints + the cost of the change from the previous action (0 before the first) + the joint
    # speed cost; success within 2 cm.
    rng = np.random.default_rng(0)
    env.reset(seed=1)
    prev = np.zeros(7)
    for _ in range(30):
        a = rng.uniform(-1, 1, 7)
        _, r, _, _, info = env.step(a.astype(np.float32))
        ee, goal = u.end_effector(), u.goal
        a32 = a.astype(np.float32).astype(np.float64)
        q, qd = u.data.qpos[:7], u.data.qvel[:7]
        expected = (float(u.compute_reward(ee, goal)) - panda.EFFORT_WEIGHT * np.sum(a32 ** 2)
                    - panda.POSTURE_WEIGHT * np.sum((q - np.asarray(panda.HOME)) ** 2)
                    - panda.RATE_WEIGHT * np.sum((a32 - prev) ** 2) - panda.SPEED_WEIGHT * np.sum(qd ** 2))
        assert r == pytest.approx(expected, abs=1e-9)
        assert u.reward_for(a32, prev) == pytest.approx(r, abs=1e-9)  # (the log import's reward of a step)
        prev = a32
        assert info["is_success"] == bool(np.linalg.norm(ee - goal) <= 0.02)
    u.set_joint_state(_ik(u, u.goal)[0], np.zeros(7), goal=u.goal)
    assert u.terms.evaluate(np.zeros(7))[2] is True


@pytest.mark.parametrize("action", ["absolute", "delta"])
def test_ik_expert_reaches_and_randomization_runs(action):
    env = E.make("PandaReach-v0", seed=2, randomization="default", action=action)
    u = env.unwrapped
    successes = 0
    for _ in range(3):
        obs, _ = env.reset()
        q, _ = _ik(u, obs["desired_goal"].astype(np.float64))
        for _ in range(100):
            if action == "absolute":
                a = ((q - u.action_map()[0]) / u.action_map()[1]).astype(np.float32)
            else:  # a feedback law toward the IK solution, from the observed joints
                a = np.clip((q - obs["observation"][:7]) / u.action_scale, -1, 1).astype(np.float32)
            obs, r, te, tr, info = env.step(a)
            assert not info["physics_error"] and math.isfinite(r)
        successes += info["is_success"]
    assert successes == 3  # the joint servos get there despite mass / gain / latency / noise randomization
