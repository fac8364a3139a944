"""Goal checks of goal-conditioned policies without ROS (robot_rl.deploy.goal_input) and the policy loop holding
until a goal arrives. Fast, no DDS."""

from __future__ import annotations

import numpy as np
import pytest

from robot_rl.deploy.goal_input import GoalGate
from robot_rl.deploy.policy_loop import GoalInputBuilder, PolicyLoop

LOW, HIGH = (0.3, -0.3, 0.1), (0.7, 0.3, 0.6)


def gate(**kw):
    return GoalGate(3, frame="link0", low=LOW, high=HIGH, **kw)


def test_panda_task_declares_its_goal_box_from_the_env_constants():
    from robot_rl.envs import panda, task_spec

    spec = task_spec("robot_rl/PandaReach-v0")
    assert np.allclose(spec.goal_box[0], panda.GOAL_LOW) and np.allclose(spec.goal_box[1], panda.GOAL_HIGH)


def test_accepts_goal_in_base_frame_inside_the_box():
    g = gate()
    assert g.goal is None
    d = g.check([0.5, 0.1, 0.3], "link0")
    assert d.accepted and d.reason == "" and np.allclose(d.goal, [0.5, 0.1, 0.3])
    assert g.check(HIGH, "link0").accepted and g.check(LOW, None).accepted  # faces inside; arrays carry no frame
    assert (g.accepted, g.refused) == (3, 0)


def test_wrong_or_missing_frame_is_refused_naming_both_frames_and_keeps_the_goal():
    g = gate(goal=[0.5, 0.0, 0.3])
    d = g.check([0.5, 0.0, 0.4], "world")
    assert not d.accepted and d.kind == "frame" and np.allclose(d.goal, [0.5, 0.0, 0.3])
    assert "'world'" in d.reason and "'link0'" in d.reason and "keeping the previous goal (0.5, 0, 0.3)" in d.reason
    d = g.check([0.5, 0.0, 0.4], "")
    assert not d.accepted and "no frame" in d.reason and "'link0'" in d.reason
    assert g.refused == 2 and np.allclose(g.goal, [0.5, 0.0, 0.3])


def test_goal_outside_the_workspace_is_not_chased():
    g = gate()
    d = g.check([0.9, 0.0, 0.3], "link0")
    assert not d.accepted and d.kind == "workspace" and d.goal is None
    assert "not chased" in d.reason and "x=0.9 not in [0.3, 0.7]" in d.reason and "holding position" in d.reason
    d = g.check([0.5, -0.31, 0.05], "link0")
    assert "y=-0.31" in d.reason and "z=0.05" in d.reason and "x=" not in d.reason.split("(", 2)[2]


def test_malformed_goals_and_initial_goal():
    g = gate()
    for bad in ([0.5, 0.0], [0.5, float("nan"), 0.3], ["a", 1, 2]):
        assert g.check(bad, "link0").kind == "malformed"
    assert g.refused == 3 and g.goal is None
    with pytest.raises(ValueError, match="initial goal refused.*not chased"):
        gate(goal=[1.0, 0.0, 0.3])
    assert GoalGate(2).check([10.0, -10.0]).accepted  # no workspace declared: any finite goal
    with pytest.raises(ValueError, match="corners"):
        GoalGate(3, low=(0, 0, 0), high=(1, -1, 1))


def test_policy_loop_holds_the_first_measured_position_until_a_goal_arrives():
    from robot_rl.envs import make
    from robot_rl.safety import SafetyFilter

    base = make("robot_rl/PandaReach-v0", seed=0).unwrapped
    profile = base.profile
    builder = GoalInputBuilder(base.observation_builder, 3)
    calls = []
    center = np.asarray(profile.standing_pose)

    def policy(x):
        calls.append(x)
        return center + 0.01

    loop = PolicyLoop(SafetyFilter(profile), builder, policy, control_period_s=0.02, hold_without_goal=True)
    assert loop.holding
    q0 = np.asarray(profile.standing_pose) + 0.05
    for k in range(profile.safety.recover_after):
        loop.on_joint_state(profile.joint_names, q0, np.zeros(7), [], stamp_s=0.002 * k, now_s=0.002 * k)
    cmd, status, _ = loop.step(0.02)
    assert status.mode == "normal" and not calls and np.allclose(cmd, q0)
    loop.on_joint_state(profile.joint_names, q0 - 0.01, np.zeros(7), [], stamp_s=0.03, now_s=0.03)
    cmd, _, _ = loop.step(0.04)
    assert not calls and np.allclose(cmd, q0), "holds the latched position, not the latest measurement"
    assert loop.set_goal([0.5, 0.0, 0.3]) and not loop.holding
    loop.on_joint_state(profile.joint_names, q0, np.zeros(7), [], stamp_s=0.05, now_s=0.05)
    loop.step(0.06)
    assert calls and np.allclose(calls[-1][-3:], [0.5, 0.0, 0.3])
    cart = make("robot_rl/ArmReach-v0", seed=0).unwrapped  # effort interface: holding is no safe command
    if cart.profile.command_interface != "position":
        with pytest.raises(ValueError, match="needs a position interface"):
            PolicyLoop(SafetyFilter(cart.profile), GoalInputBuilder(cart.observation_builder, 3), policy,
                       control_period_s=0.02, hold_without_goal=True)
