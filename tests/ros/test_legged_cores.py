"""The ROS-free cores of the Go2 deployment: the policy node's observation equals the training env's, the velocity
command input, the legged control loop, and the reality sample sim_robot runs. Fast, no DDS."""

from __future__ import annotations

import math

import mujoco
import numpy as np
import pytest

from robot_rl.core.profile import load_profile
from robot_rl.deploy.legged_loop import LocomotionInputs, LocomotionLoop, VelocityCommand, parse_sequence
from robot_rl.deploy.legged_reality import LeggedReality, legged_sample, stand
from robot_rl.deploy.sim_plant import SimPlant
from robot_rl.envs.go2 import task
from robot_rl.envs.locomotion_env import LocomotionEnv
from robot_rl.safety import SafetyFilter

ENV_ID = "robot_rl/Go2Joystick-v0"


@pytest.fixture(scope="module")
def profile():
    return load_profile("go2")


def inputs_for(profile, safety=None):
    spec = task()
    safety = safety or SafetyFilter(profile)
    return safety, LocomotionInputs(safety, standing_pose=profile.standing_pose, center=profile.standing_pose,
                                    half_range=[spec.action_scale] * 12, gait_hz=spec.gait_hz,
                                    control_period_s=profile.control_period_s)


def test_node_observation_equals_the_training_env_observation(profile):
    """Same state in, same 47 floats out: the env (nominal, no noise) and LocomotionInputs over the safety filter."""
    env = LocomotionEnv(task(), randomization=None, seed=4)
    env.reset(seed=4)
    env.set_command([0.6, -0.2, 0.3])
    rng = np.random.default_rng(0)
    safety, inputs = inputs_for(profile)
    vec = env.vec
    for k in range(30):
        action = rng.uniform(-1, 1, 12)
        obs, *_ = env.step(action)
        st = vec._state[0]
        m = vec.model
        qpos, qvel = st[1:1 + m.nq], st[1 + m.nq:1 + m.nq + m.nv]
        now = 10.0 + 0.02 * k
        assert safety.on_imu(qpos[3:7], qvel[3:6], now)
        assert safety.on_joint_state(list(profile.joint_names), qpos[vec._jq], qvel[vec._jv], [], now, now)
        inputs.command[:] = vec._command[0]
        inputs.phase = float(vec._phase[0])
        inputs.last_action[:] = np.clip(action, -1, 1)
        built = inputs.build(safety.position, safety.velocity)
        assert built.dtype == np.float32 and built.shape == obs.shape
        np.testing.assert_allclose(built, obs, atol=1e-6, err_msg=f"step {k}")
    env.close()


def test_velocity_command_clips_refuses_and_goes_stale():
    spec = task()
    hi = np.asarray(spec.command_max)
    v = VelocityCommand([spec.command_min_vx, -hi[1], -hi[2]], hi, timeout_s=0.5)
    out = np.empty(3)
    assert v.current(0.0, out).tolist() == [0.0, 0.0, 0.0] and v.stale  # nothing yet: stand
    assert v.on_twist(0.5, 0.1, -0.2, 1.0) is False
    assert v.current(1.4, out).tolist() == [0.5, 0.1, -0.2] and not v.stale
    assert v.on_twist(3.0, -2.0, 5.0, 1.5) is True and v.value.tolist() == [1.0, -0.5, 1.0]
    assert v.on_twist(-9.0, 0.0, 0.0, 1.6) is True and v.value[0] == -0.5
    assert v.on_twist(math.nan, 0.0, 0.0, 1.7) is None and v.value[0] == -0.5 and v.refused == 1
    assert v.current(2.1, out)[0] == -0.5
    assert v.current(2.11, out).tolist() == [0.0, 0.0, 0.0] and v.stale  # 0.51 s after the last accepted one
    with pytest.raises(ValueError, match="timeout must be > 0"):
        VelocityCommand([0, 0, 0], [1, 1, 1], timeout_s=0.0)


def test_cmd_vel_sequence_parses_and_refuses_bad_segments():
    assert parse_sequence("0.5 0 0 4; 0.3, 0, 0.5, 3;") == [(0.5, 0.0, 0.0, 4.0), (0.3, 0.0, 0.5, 3.0)]
    assert parse_sequence("  ") == []
    for bad, what in (("0.5 0 0", "segment 0 '0.5 0 0'"), ("0.5 0 0 1; 1 0 0 -2", "segment 1 '1 0 0 -2'"),
                      ("nan 0 0 1", "segment 0 'nan 0 0 1'")):
        with pytest.raises(ValueError, match=what):
            parse_sequence(bad)


def test_loop_feeds_back_the_normalized_action_and_advances_the_clock(profile):
    safety, inputs = inputs_for(profile)
    target = np.asarray(profile.standing_pose) + 0.25  # a = +0.5 on every joint
    seen = []

    def policy(obs):
        seen.append(obs.copy())
        return target

    loop = LocomotionLoop(safety, inputs, policy, VelocityCommand([-0.5, -0.5, -1], [1, 0.5, 1]),
                          control_period_s=0.02)
    loop.velocity.on_twist(0.5, 0.0, 0.0, 0.0)
    for k in range(8):
        now = 0.005 * (k + 1)
        safety.on_imu((1.0, 0.0, 0.0, 0.0), (0.0, 0.0, 0.0), now)
        loop.on_joint_state(profile.joint_names, profile.standing_pose, [0.0] * 12, [], now, now)
    cmd, status, _ = loop.step(0.04)
    # the first command ramps from where the robot is (the rate limit's reference is the measured position)
    assert status.mode == "normal" and np.allclose(cmd, profile.standing_pose)
    assert np.allclose(inputs.last_action, 0.5) and inputs.phase == pytest.approx(0.04)
    cmd, status, _ = loop.step(0.06)  # 0.25 rad away: within 20 rad/s x 0.02 s
    assert np.allclose(cmd, target) and not status.rate_limited
    obs = seen[-1]
    assert np.allclose(obs[30:42], 0.5)  # last action
    assert obs[42:45].tolist() == [0.5, 0.0, 0.0]  # command
    assert obs[45] == pytest.approx(math.sin(2 * math.pi * 0.04), abs=1e-6)  # clock
    assert obs[3:6].tolist() == [0.0, 0.0, -1.0] and not obs[6:18].any()  # upright, standing
    # a stale IMU: the filter holds; the fed-back action is the normalized safe command (standing: 0)
    cmd, status, _ = loop.step(0.2)
    assert inputs.phase == pytest.approx(0.12)
    assert status.safe and np.allclose(cmd, profile.standing_pose) and not inputs.last_action.any()


def test_reality_sample_is_the_envs_draw_and_sim_robot_applies_it(profile):
    spec, s1 = legged_sample(ENV_ID, "reality", 7)
    _, s1b = legged_sample(ENV_ID, "reality", 7)
    _, s2 = legged_sample(ENV_ID, "reality", 8)
    assert spec.name == "Go2Joystick" and s1["variant"] == s1b["variant"]
    assert np.array_equal(s1["calibration"], s1b["calibration"]) and not np.array_equal(s1["calibration"],
                                                                                       s2["calibration"])
    model = s1["model"]
    assert model.dof_frictionloss.max() > 0, "reality samples have the identified joint friction"
    data = mujoco.MjData(model)
    stand(model, data, profile, s1["stand_height"])
    feet = [data.geom(f).xpos[2] - model.geom(f).size[0] for f in ("FL", "FR", "RL", "RR")]
    assert max(abs(z) for z in feet) < 0.005, feet  # standing on the floor, not dropped or sunk
    reality = LeggedReality(s1, profile, data, np.random.default_rng(0), profile.control_period_s)
    plant = SimPlant(profile, model, data, reality=reality, command_timeout_s=0.1)
    q, _, _ = plant.measure()
    assert np.abs(q - np.asarray(profile.standing_pose) - s1["calibration"]).max() < 0.05  # offsets + noise
    plant.advance(0.0)
    assert plant.on_command(profile.standing_pose, 0.0)
    plant.advance(0.01)
    np.testing.assert_allclose(plant.applied_command, np.asarray(profile.standing_pose) - s1["calibration"])
    r = s1["randomization"]
    for t in np.arange(0.1, r.push_interval_s + 0.05, 0.1):  # <= 100 physics steps per call
        plant.advance(t)
    assert reality.pushes == 1 and abs(data.time - r.push_interval_s) < 0.1
    quat, gyro, acc = plant.measure_imu()
    assert abs(np.linalg.norm(quat) - 1) < 1e-9 and gyro.shape == (3,) and acc is not None
