"""sim_robot: a MuJoCo model standing in for a ros2_control robot (physics in ``robot_rl.deploy.sim_plant``).

Publishes ``/joint_states`` (sensor_msgs/JointState, profile joint names) every ``sensor_period_s`` of steady time,
accepts ``/<controller>/commands`` (std_msgs/Float64MultiArray, ``command_joints`` order) like a forward command
controller, applies its own command timeout (no command for ``command_timeout_s`` -> safe command), and can apply a
held-out randomization sample (``randomization`` + ``seed``, through the env of ``env_id``), command latency and
sensor noise. Also publishes ``~/applied_command`` (what drives the actuators), ``~/reward``
(Float64MultiArray ``[reward, return, timed_out, timeouts, steps]``: the task reward of the last control step, the
return since the first command, ``steps`` control steps of the env, NaN without ``env_id``) and, with
``publish_clock``, ``/clock``.

Legged robots (a profile with ``imu_site`` on a floating base, e.g. ``go2`` with ``env_id:=robot_rl/Go2Joystick-v0``):
the robot starts standing (standing pose, feet on the floor); ``/imu`` (sensor_msgs/Imu: base orientation, body-frame
angular velocity, the accelerometer, frame_id the IMU site) is published with every joint-state message, never
faster than the physics step; ``randomization:=reality`` runs the task's held-out sample of ``seed``
(``robot_rl.deploy.legged_reality``: model variant, encoder offsets, IMU bias and noise, pushes); ``~/base_state``
(Float64MultiArray ``[sim_time, x, y, z, vx, vy, vz, tilt, fell]``: true base position [m], world-frame velocity
[m/s], tilt from upright [rad], 1 once the base tilted past the task's fall_tilt or sank below its fall_height) is
published every control period for tests and evaluation, instead of ``~/reward``.

Arms (a profile with ``ee_site``, e.g. ``panda`` with ``env_id:=robot_rl/PandaReach-v0``): position servos with the
profile's gains at the physics rate, plus the env's gravity compensation (nominal model) before every physics step;
``~/ee_position`` (Float64MultiArray ``[sim_time, x, y, z]``: the true tool centre point in ``base_frame`` [m]) every
control period. A goal-conditioned env publishes no ``~/reward`` (its reward is about the env's own random goal, not
the goal the policy is given). ``randomization:=nominal`` is the unrandomized model, like ``none``.

Run: ``python -m robot_rl.nodes.sim_robot --ros-args -p robot:=cartpole -p initial_positions:=[0.0,0.05]``.
"""

from __future__ import annotations

import math
import sys
import time
from types import SimpleNamespace

import numpy as np
from builtin_interfaces.msg import Time
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock as ClockMsg
from sensor_msgs.msg import Imu, JointState
from std_msgs.msg import Float64MultiArray

from robot_rl.nodes._common import ParamReader, StartupError, run_node, steady_clock

NAME = "sim_robot"


def _legged(env_id: str) -> bool:
    """True for a legged velocity-tracking task (its env offers ``episode_sample``)."""
    from robot_rl.envs import env_class

    try:
        return hasattr(env_class(env_id), "episode_sample")
    except KeyError as exc:
        raise StartupError(f"parameter 'env_id': {exc}") from None


def _load_legged(profile, env_id: str, randomization: str, seed: int):
    """(model, data, LeggedReality, task spec): the sample of ``seed``, the robot standing on the floor."""
    import mujoco

    from robot_rl.deploy.legged_reality import LeggedReality, legged_sample, stand

    try:
        spec, sample = legged_sample(env_id, randomization or None, seed)
    except Exception as exc:  # noqa: BLE001 - any env construction failure is a refused start
        raise StartupError(f"parameter 'env_id'/'randomization': cannot build env {env_id!r} with randomization "
                           f"{randomization!r}: {exc}") from None
    if spec.robot != profile.name:
        raise StartupError(f"parameter 'env_id': env {env_id!r} uses robot {spec.robot!r}, parameter 'robot' is "
                           f"{profile.name!r}")
    model = sample["model"]
    data = mujoco.MjData(model)
    stand(model, data, profile, sample["stand_height"])
    reality = LeggedReality(sample, profile, data, np.random.default_rng([seed, 1]), profile.control_period_s)
    return model, data, reality, spec


def _load(robot: str, env_id: str, randomization: str, seed: int):
    """(profile, model, data, EnvReality / LeggedReality or None, legged task spec or None) with the randomization
    sample of ``seed`` applied if asked.
    """
    from robot_rl.core.config import ConfigError
    from robot_rl.core.profile import load_profile
    from robot_rl.deploy.sim_plant import EnvReality

    try:
        profile = load_profile(robot)
    except (ConfigError, FileNotFoundError) as exc:
        raise StartupError(f"parameter 'robot': cannot load robot profile {robot!r}: {exc}") from None
    if not env_id:
        if randomization:
            raise StartupError("parameter 'randomization' needs parameter 'env_id' (the env applies the sample)")
        import mujoco

        model = profile.load_model()
        return profile, model, mujoco.MjData(model), None, None
    if _legged(env_id):
        return (profile, *_load_legged(profile, env_id, randomization, seed))
    if randomization == "nominal":  # (legged tasks have a "nominal" sample; here it is the unrandomized model)
        randomization = ""
    try:
        from robot_rl.envs import make

        env = make(env_id, randomization=randomization or None, seed=seed)
    except Exception as exc:  # noqa: BLE001 - any env construction failure is a refused start
        raise StartupError(f"parameter 'env_id'/'randomization': cannot build env {env_id!r} with randomization "
                           f"{randomization!r}: {exc}") from None
    base = env.unwrapped
    if base.profile is None or base.profile.name != profile.name:
        raise StartupError(f"parameter 'env_id': env {env_id!r} uses robot "
                           f"{getattr(base.profile, 'name', None)!r}, parameter 'robot' is {profile.name!r}")
    # The env's sample rng continues (pushes, drift, sensor noise) from the seeded reset.
    return profile, base.model, base.data, EnvReality(env, base.np_random), None


def node_parameters(p: ParamReader) -> SimpleNamespace:
    """Declare every parameter of sim_robot and return their values. ``--help`` lists the parameters from here (on a
    ``ParameterCatalog``), so this only declares: loading and cross-checks are the node's.
    """
    return SimpleNamespace(
        robot=p.str("robot", "cartpole", "robot profile name (hardware/<robot>.yaml) or path"),
        env_id=p.str("env_id", "", "env whose randomization / reward to use, e.g. robot_rl/CartpoleBalance-v0; "
                     "empty: raw MJCF, no reward"),
        randomization=p.str("randomization", "none", "randomization profile of the held-out 'reality' sample "
                            "(sim/randomization/<name>.yaml; legged tasks: reality, train or nominal); none, nominal "
                            "(or empty): nominal model"),
        seed=p.int("seed", 0, "seed of the randomization sample and the sensor noise", min_value=0),
        sensor_period_s=p.float("sensor_period_s", 0.0, "joint-state (and IMU) publication period [s] (steady "
                                "clock), at least the physics step; 0: the profile's sensor_period_s",
                                min_value=0.0),
        command_timeout_s=p.float("command_timeout_s", 0.0, "no command for this long -> safe command [s]; 0: the "
                                  "profile's safety.command_timeout_s", min_value=0.0),
        latency_s=p.float("latency_s", 0.0, "delay from command arrival to actuation [s]", min_value=0.0),
        position_noise_std=p.float("position_noise_std", 0.0, "joint position measurement noise std [rad or m]",
                                   min_value=0.0),
        velocity_noise_std=p.float("velocity_noise_std", 0.0, "joint velocity measurement noise std [rad/s or "
                                   "m/s]", min_value=0.0),
        initial_positions=p.floats("initial_positions", [], "initial joint positions in the robot profile's joint "
                                   "order [rad or m]; empty: the env's reset state (or the model's qpos0)"),
        initial_velocities=p.floats("initial_velocities", [], "initial joint velocities in the robot profile's "
                                    "joint order [rad/s or m/s]; empty: unchanged"),
        hold_until_first_command=p.bool("hold_until_first_command", False, "keep the initial state (physics "
                                        "paused) until the first command arrives, so a slow-starting commander "
                                        "does not find the robot already moving"),
        publish_clock=p.bool("publish_clock", False, "publish /clock with the simulation time"),
    )


class SimRobotNode(Node):
    def __init__(self):
        super().__init__(NAME)
        a = node_parameters(ParamReader(self))
        randomization = "" if a.randomization == "none" else a.randomization
        seed = a.seed
        profile, model, data, reality, legged = _load(a.robot, a.env_id, randomization, seed)
        self.profile = profile
        self.legged = legged
        # never faster than physics: a second message of the same physics step would repeat a sample
        self.sensor_period_s = max(a.sensor_period_s or profile.sensor_period_s, float(model.opt.timestep))
        timeout = a.command_timeout_s or profile.safety.command_timeout_s
        latency, pos_noise, vel_noise = a.latency_s, a.position_noise_std, a.velocity_noise_std
        n = len(profile.joint_names)
        init_q, init_v = a.initial_positions, a.initial_velocities
        for pname, vals in (("initial_positions", init_q), ("initial_velocities", init_v)):
            if vals and len(vals) != n:
                raise StartupError(f"parameter {pname!r}: expected {n} values for joints "
                                   f"{list(profile.joint_names)}, got {len(vals)}")
        hold = a.hold_until_first_command
        self.publish_clock = a.publish_clock
        from robot_rl.deploy.sim_plant import SimPlant

        self.plant = SimPlant(profile, model, data, latency_s=latency, position_noise_std=pos_noise,
                              velocity_noise_std=vel_noise, command_timeout_s=timeout,
                              rng=np.random.default_rng(seed), reality=reality, hold_until_first_command=hold)
        if reality is not None:
            self.plant.latency_s += reality.action_latency_s
            self.get_logger().info(f"reality sample (seed {seed}): {reality.sample}")
        self.plant.set_initial_state(init_q or None, init_v or None)
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.pub_js = self.create_publisher(JointState, profile.topics.joint_states, qos)
        self.pub_applied = self.create_publisher(Float64MultiArray, "~/applied_command", qos)
        # A goal-conditioned env's reward is about its own random goal, not the robot's: ~/ee_position instead.
        goal_task = legged is None and reality is not None and bool(reality.base.task.goal_dim)
        self.pub_reward = self.create_publisher(Float64MultiArray, "~/reward", qos) \
            if legged is None and not goal_task else None
        self.pub_ee = None
        if profile.ee_site and legged is None:
            self.pub_ee = self.create_publisher(Float64MultiArray, "~/ee_position", qos)
            self._ee_msg = Float64MultiArray()
            self._next_ee_s = 0.0
        self.pub_imu = self.pub_base = None
        if legged is not None:
            self.pub_imu = self.create_publisher(Imu, profile.topics.imu, qos)
            self.pub_base = self.create_publisher(Float64MultiArray, "~/base_state", qos)
            self._imu_msg = Imu()
            self._imu_msg.header.frame_id = profile.imu_site
            self._base_msg = Float64MultiArray()
            self._next_base_s = 0.0
            self.fell = False
        self.pub_clock = self.create_publisher(ClockMsg, "/clock", qos) if self.publish_clock else None
        self.create_subscription(Float64MultiArray, profile.topics.commands, self._on_command, qos)
        self._msg = JointState(name=list(profile.joint_names))
        self._was_timed_out = True
        self.slips = 0
        self.create_timer(self.sensor_period_s, self._tick, clock=steady_clock())
        if legged is not None:
            self.get_logger().info(f"legged task {legged.name}: imu on {profile.topics.imu} (frame "
                                   f"{profile.imu_site}), true base state on ~/base_state")
        if self.pub_ee is not None:
            self.get_logger().info(f"true end effector ({profile.ee_site}) in frame {profile.base_frame or 'world'} "
                                   f"on ~/ee_position every {profile.control_period_s} s of sim time")
        self.get_logger().info(
            f"robot {profile.name}: joint_states on {profile.topics.joint_states} every {self.sensor_period_s} s, "
            f"commands on {profile.topics.commands}, command timeout {timeout} s, latency {self.plant.latency_s} s, "
            f"randomization {randomization or 'off'} (seed {seed})")

    def _on_command(self, msg: Float64MultiArray) -> None:
        if not self.plant.on_command(msg.data, time.monotonic()):
            self.get_logger().warning(f"refused command {list(msg.data)} (expected "
                                      f"{len(self.profile.command_joints)} finite values)",
                                      throttle_duration_sec=1.0)

    def _tick(self) -> None:
        now = time.monotonic()
        steps = self.plant.advance(now)
        if steps >= 100:
            self.slips += 1
        plant = self.plant
        if plant.timed_out != self._was_timed_out:
            if plant.timed_out and plant.timeouts:
                self.get_logger().warning(f"no command for {plant.command_timeout_s} s: applying the safe command")
            elif not plant.timed_out:
                self.get_logger().info("commands arriving: forwarding them")
            self._was_timed_out = plant.timed_out
        if self.publish_clock and steps == 0:
            return  # sim time did not advance: a second message with the same stamp would be a repeated sample
        q, v, effort = plant.measure()
        msg = self._msg
        if self.publish_clock:
            sim_ns = int(round(plant.data.time * 1e9))
            msg.header.stamp = Time(sec=sim_ns // 1_000_000_000, nanosec=sim_ns % 1_000_000_000)
            self.pub_clock.publish(ClockMsg(clock=msg.header.stamp))
        else:
            msg.header.stamp = self.get_clock().now().to_msg()
        msg.position, msg.velocity, msg.effort = q.tolist(), v.tolist(), effort.tolist()
        self.pub_js.publish(msg)
        if self.legged is not None:
            self._publish_legged(msg.header.stamp)
        self.pub_applied.publish(Float64MultiArray(data=plant.applied_command.tolist()))
        if self.pub_ee is not None and plant.data.time + 1e-9 >= self._next_ee_s:
            self._next_ee_s = plant.data.time + self.profile.control_period_s
            self._ee_msg.data = [float(plant.data.time), *plant.ee_position().tolist()]
            self.pub_ee.publish(self._ee_msg)
        if self.pub_reward is not None:
            self.pub_reward.publish(Float64MultiArray(
                data=[plant.reward, plant.episode_return, float(plant.timed_out), float(plant.timeouts),
                      float(plant.reality.steps) if plant.reality is not None else math.nan]))

    def _publish_legged(self, stamp) -> None:
        quat, gyro, acc = self.plant.measure_imu()
        m = self._imu_msg
        m.header.stamp = stamp
        o = m.orientation
        o.w, o.x, o.y, o.z = (float(v) for v in quat)  # ROS order is x, y, z, w: set by name
        g = m.angular_velocity
        g.x, g.y, g.z = (float(v) for v in gyro)
        a = m.linear_acceleration
        if acc is None:
            a.x = a.y = a.z = 0.0
            m.linear_acceleration_covariance[0] = -1.0  # REP-145: not measured
        else:
            a.x, a.y, a.z = (float(v) for v in acc)
        self.pub_imu.publish(m)
        t = self.plant.data.time
        if t + 1e-9 < self._next_base_s:
            return
        self._next_base_s = t + self.profile.control_period_s
        pos, vel, tilt = self.plant.base_state()
        spec = self.legged
        if not self.fell and (tilt > spec.fall_tilt or pos[2] < spec.fall_height):
            self.fell = True
            self.get_logger().warning(f"the robot fell at sim time {t:.3f} s (tilt {tilt:.3f} rad, base height "
                                      f"{pos[2]:.3f} m)")
        self._base_msg.data = [t, *pos.tolist(), *vel.tolist(), tilt, float(self.fell)]
        self.pub_base.publish(self._base_msg)

    def on_shutdown(self) -> None:
        p = self.plant
        if self.legged is not None:
            pos, _, _ = p.base_state()
            self.get_logger().info(f"base at x {pos[0]:.3f} m, y {pos[1]:.3f} m, z {pos[2]:.3f} m; pushes "
                                   f"{p.reality.pushes}; fell {self.fell}")
        self.get_logger().info(
            f"sim time {p.data.time:.3f} s, {p.steps} physics steps, return {p.episode_return:.3f}, "
            f"command timeouts {p.timeouts}, refused commands {p.rejected}, physics warnings "
            f"{p.physics_warnings}, real-time slips {self.slips}")


def main(argv=None) -> int:
    return run_node(NAME, SimRobotNode, argv, parameters=node_parameters)


if __name__ == "__main__":
    sys.exit(main())
