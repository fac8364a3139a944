"""Legged bags -> episodes: the import rebuilds the walking policy's observation exactly (robot_rl.data.legged_bags),
and the legged sim-to-real gap report (robot_rl.data.legged_gap) on it.

The bags are written here the way the ROS stack writes them (sim_robot: /joint_states then /imu with the same stamp;
policy_node: the command, ~/timing, ~/velocity_command per step), from a nominal Go2 sim run whose observations are
known; tests/ros/test_ros_go2.py imports a real recorded bag.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import Writer

from robot_rl.data.bags import TYPESTORE, ImportSettings
from robot_rl.data.legged_bags import import_legged_bag, is_legged
from robot_rl.envs import make

ENV = "robot_rl/Go2Joystick-v0"
STEPS = 120
COMMAND = (0.5, 0.0, 0.2)


def _quat_from_gravity(g: np.ndarray) -> np.ndarray:
    """A quaternion (w, x, y, z) whose frame sees gravity direction ``g`` (the rotation taking g to (0, 0, -1))."""
    down = np.array([0.0, 0.0, -1.0])
    axis = np.cross(g, down)
    s, c = np.linalg.norm(axis), float(g @ down)
    if s < 1e-12:
        return np.array([1.0, 0.0, 0.0, 0.0])
    angle = np.arctan2(s, c)
    return np.r_[np.cos(angle / 2), axis / s * np.sin(angle / 2)]


@pytest.fixture(scope="module")
def run():
    """A nominal Go2 run under COMMAND with random actions: observations, actions, joint targets."""
    env = make(ENV, randomization="nominal")
    obs, _ = env.reset(seed=3, options={"command": COMMAND})
    rng = np.random.default_rng(0)
    observations, actions = [obs], []
    for _ in range(STEPS):
        a = rng.uniform(-0.3, 0.3, 12)
        obs, _r, term, _t, _i = env.step(a)
        assert not term
        observations.append(obs)
        actions.append(a)
    center, half = env.unwrapped.action_map()
    return env, np.asarray(observations), np.asarray(actions), center + half * np.asarray(actions)


def _write(path, env, observations, targets, *, timing=True, velocity=True, cmd_vel=False, hole=None,
           tilt_from=None, nan_command_at=None, imu_late_every=None, imu_stamp=False):
    """The bag of ``run``: per step k (t_k = 1000 s + 20 ms k) joint states and IMU (previous physics step: the
    node steps on the joint state, before the IMU of the same stamp arrives), command k, timing, velocity command.
    ``hole``: (first, stop) steps whose messages are missing; ``tilt_from``: the IMU says "fallen" from this step.
    ``imu_late_every``: every so many steps the recorder logs the IMU sample after the joint state (the node had it
    before: DDS delivered the two topics in different orders); ``imu_stamp``: timing names the IMU sample's stamp
    (7th value, as policy_node logs it).
    """
    u = env.unwrapped
    p = u.profile
    stand = np.asarray(p.standing_pose)
    n = len(p.command_joints)
    store, ns = TYPESTORE, 1_000_000_000
    T = store.types
    F64, Layout = T["std_msgs/msg/Float64MultiArray"], T["std_msgs/msg/MultiArrayLayout"]
    Header, Time = T["std_msgs/msg/Header"], T["builtin_interfaces/msg/Time"]
    JointState, Imu = T["sensor_msgs/msg/JointState"], T["sensor_msgs/msg/Imu"]
    Quat, Vec3, Twist = T["geometry_msgs/msg/Quaternion"], T["geometry_msgs/msg/Vector3"], T["geometry_msgs/msg/Twist"]
    cov = np.zeros(9)

    def arr(x):
        return F64(layout=Layout(dim=[], data_offset=0), data=np.asarray(x, dtype=np.float64))

    with Writer(path, version=9) as w:
        c = {name: w.add_connection(topic, mtype, typestore=store) for name, topic, mtype in (
            ("js", p.topics.joint_states, JointState.__msgtype__), ("imu", p.topics.imu, Imu.__msgtype__),
            ("cmd", p.topics.commands, F64.__msgtype__), ("tim", "/policy_node/timing", F64.__msgtype__),
            ("vel", "/policy_node/velocity_command", F64.__msgtype__), ("tw", p.topics.cmd_vel, Twist.__msgtype__))}
        t0 = 1000 * ns
        for k in range(len(observations) - 1):
            if hole is not None and hole[0] <= k < hole[1]:
                continue
            o = observations[k].astype(np.float64)
            t = t0 + k * 20_000_000
            stamp = Time(sec=t // ns, nanosec=t % ns)
            g = o[3:6] / np.linalg.norm(o[3:6])
            if tilt_from is not None and k >= tilt_from:
                g = np.array([np.sin(1.3), 0.0, -np.cos(1.3)])
            js = JointState(header=Header(stamp=stamp, frame_id=""), name=list(p.joint_names),
                            position=o[6:6 + n] + stand, velocity=o[6 + n:6 + 2 * n], effort=np.zeros(0))
            imu = Imu(header=Header(stamp=stamp, frame_id="imu"), orientation=Quat(*np.r_[_quat_from_gravity(g)[1:],
                                                                                         _quat_from_gravity(g)[0]]),
                      orientation_covariance=cov, angular_velocity=Vec3(*o[0:3]), angular_velocity_covariance=cov,
                      linear_acceleration=Vec3(0.0, 0.0, 9.81), linear_acceleration_covariance=cov)
            late = imu_late_every is not None and k % imu_late_every == 0
            w.write(c["imu"], t + (100_000 if late else -100_000), store.serialize_cdr(imu, Imu.__msgtype__))
            w.write(c["js"], t, store.serialize_cdr(js, JointState.__msgtype__))
            target = np.full(n, np.nan) if k == nan_command_at else targets[min(k, len(targets) - 1)]
            w.write(c["cmd"], t + 600_000, store.serialize_cdr(arr(target), F64.__msgtype__))
            if timing:
                row = [k, t / ns, 6e-4, 6e-4, 0.0] + ([0.0, t / ns] if imu_stamp else [])
                w.write(c["tim"], t + 700_000, store.serialize_cdr(arr(row), F64.__msgtype__))
            if velocity:
                phase = np.arctan2(o[-2], o[-1]) / (2 * np.pi) % 1.0
                w.write(c["vel"], t + 650_000, store.serialize_cdr(arr([*o[-5:-2], 0.0, phase]), F64.__msgtype__))
            if cmd_vel and k % 5 == 0:
                w.write(c["tw"], t, store.serialize_cdr(Twist(linear=Vec3(*COMMAND[:2], 0.0),
                                                              angular=Vec3(0.0, 0.0, COMMAND[2])),
                                                        Twist.__msgtype__))
    return path


def test_is_legged_tells_legged_envs_apart():
    assert is_legged(make(ENV)) and not is_legged(make("robot_rl/CartpoleBalance-v0"))


def test_import_rebuilds_the_observation_actions_and_measured_reward(run, tmp_path):
    env, observations, actions, targets = run
    eps, report = import_legged_bag(_write(tmp_path / "bag", env, observations, targets), env)
    assert report.ok and len(eps) == 1, report.describe()
    ep = eps[0]
    # the first command only gives the next step's last action
    assert len(ep) == STEPS - 2 and ep.truncations[-1] and not ep.terminations.any()
    np.testing.assert_allclose(ep.observations, observations[1:STEPS], atol=2e-6)
    np.testing.assert_allclose(ep.actions, actions[1:STEPS - 1], atol=1e-6)
    np.testing.assert_allclose(ep.infos["joint_targets"], targets[1:STEPS], atol=1e-9)
    assert "track_yaw_rate" in ep.metadata["reward_terms"] and "orientation" in ep.metadata["reward_terms"]
    assert {"track_lin_vel", "gait", "torques"} <= set(ep.metadata["reward_terms_unmeasured"])  # no efforts logged
    # reward = the measured terms of the task, from the next observation and the action
    spec = env.unwrapped.task
    nxt, a, prev = observations[2:STEPS].astype(np.float64), actions[1:STEPS - 1], actions[:STEPS - 2]
    terms = {t.name: t for t in spec.reward}
    want = (terms["track_yaw_rate"].weight * terms["track_yaw_rate"].fn(nxt[:, 0:3], observations[1:STEPS - 1, 42:45])
            + terms["orientation"].weight * terms["orientation"].fn(nxt[:, 3:6])
            + terms["pose"].weight * terms["pose"].fn(nxt[:, 6:18])
            + terms["roll_pitch_rate"].weight * terms["roll_pitch_rate"].fn(nxt[:, 0:3])
            + terms["action_rate"].weight * terms["action_rate"].fn(a, prev))
    lim = terms["joint_limits"]
    assert lim.name in ep.metadata["reward_terms"] and "termination" in ep.metadata["reward_terms"]
    np.testing.assert_allclose(ep.rewards, want, atol=1e-4)  # joint limits and falls: 0 in this run


def test_timing_names_the_imu_sample_the_node_used(run, tmp_path):
    """The recorder may log a step's IMU sample after its joint state although the node had it first: the IMU stamp
    in the node's timing message picks the right sample; without it the import takes the one logged before.
    """
    env, observations, actions, targets = run
    eps, report = import_legged_bag(_write(tmp_path / "named", env, observations, targets, imu_late_every=3,
                                           imu_stamp=True), env)
    assert report.ok and len(eps) == 1 and "IMU sample named" not in report.describe(), report.describe()
    np.testing.assert_allclose(eps[0].observations, observations[1:STEPS], atol=2e-6)
    eps, _ = import_legged_bag(_write(tmp_path / "unnamed", env, observations, targets, imu_late_every=3), env)
    first = STEPS - len(eps[0].observations)  # step 0 has no IMU sample logged before it: the episode starts later
    gyro_error = np.abs(eps[0].observations[:, 0:3] - observations[first:STEPS, 0:3]).max(axis=1)
    late = (np.arange(first, STEPS) % 3) == 0
    assert (gyro_error[late] > 1e-5).all() and (gyro_error[~late] < 2e-6).all()  # the late steps took the previous one


def test_without_the_node_topics_cmd_vel_is_held_and_the_clock_counted(run, tmp_path):
    env, observations, _actions, targets = run
    bag = _write(tmp_path / "bag", env, observations, targets, timing=False, velocity=False, cmd_vel=True)
    eps, report = import_legged_bag(bag, env)
    text = report.describe()
    assert len(eps) == 1 and "no /policy_node/timing" in text and "/cmd_vel held 0.5 s" in text
    ep = eps[0]
    # everything but the clock is rebuilt exactly; the clock runs at the task's rate from the first command
    np.testing.assert_allclose(ep.observations[:, :-2], observations[1:STEPS, :-2], atol=2e-6)
    phase = np.arctan2(ep.observations[:, -2], ep.observations[:, -1]) / (2 * np.pi)
    step = np.diff(np.unwrap(phase * 2 * np.pi)) / (2 * np.pi)
    np.testing.assert_allclose(step, env.unwrapped.task.gait_hz * 0.02, atol=1e-6)


def test_a_gap_splits_and_a_fall_ends_the_episode(run, tmp_path):
    env, observations, _actions, targets = run
    eps, report = import_legged_bag(_write(tmp_path / "gap", env, observations, targets, hole=(50, 60)), env)
    assert [len(e) for e in eps] == [48, STEPS - 62], report.describe()
    np.testing.assert_allclose(eps[1].observations, observations[61:STEPS], atol=2e-6)
    # a non-finite command is dropped like a lost message: the next step's last action is unknown, so it splits
    eps, report = import_legged_bag(_write(tmp_path / "nan", env, observations, targets, nan_command_at=30), env)
    assert [len(e) for e in eps] == [28, STEPS - 33], report.describe()
    assert "1 command(s) of the wrong length or not finite dropped" in report.describe()
    np.testing.assert_allclose(eps[1].observations, observations[32:STEPS], atol=2e-6)
    eps, report = import_legged_bag(_write(tmp_path / "fall", env, observations, targets, tilt_from=80), env)
    assert len(eps) == 1 and len(eps[0]) == 79 and eps[0].terminations[-1], report.describe()
    assert "the robot fell at t=1001.601 s" in report.describe()
    short, report = import_legged_bag(tmp_path / "fall", env, ImportSettings(control_period_s=0.02, min_steps=100))
    assert not short and "only 79 step(s)" in report.describe()


def test_cli_replay_agreement_and_legged_gap_report(run, tmp_path, capsys):
    from robot_rl.cli import main

    env, observations, _actions, targets = run
    bag = _write(tmp_path / "bag", env, observations, targets)
    assert main(["replay", str(bag), "--env", ENV, "--resim", "--out", str(tmp_path / "r")]) == 2
    assert "--resim of a legged robot needs --policy" in capsys.readouterr().err
    assert main(["replay", str(bag), "--env", ENV, "--video", str(tmp_path / "v.gif")]) == 2
    assert "a legged robot's video needs --policy MODEL_DIR" in capsys.readouterr().err
    model = str(Path(__file__).resolve().parents[2] / "models" / "go2_joystick_ppo")
    assert main(["replay", str(bag), "--env", ENV, "--policy", model, "--resim", "--out", str(tmp_path / "r")]) == 0
    text = (tmp_path / "r" / "gap_report.md").read_text()
    assert "Sim-to-real gap (legged)" in text and "| falls | 0  | 0  | - |" in text
    assert (tmp_path / "r" / "gap_timeseries.png").stat().st_size > 0 and (tmp_path / "r" / "agreement.md").exists()
