"""policy_node: run an exported ONNX policy on a robot through the safety filter (math in ``deploy.policy_loop``).

Subscribes ``/joint_states`` (mapped by joint name) and, for goal-conditioned policies, the goal topic; on the first
joint-state message at or after each ``control_period_s`` boundary (``trigger: sensor``, the default:
sensor-to-command latency is the compute time; a faster sensor stream is decimated to the control period, and a
timer every period stays as the stale-sensor watchdog), or every ``control_period_s`` of steady time on the latest
sample (``trigger: timer``: up to one period of phase waiting), builds the observation with the env's
``ObservationBuilder``, runs ``OnnxPolicy``, filters the action with ``SafetyFilter`` and publishes
``/<controller>/commands``. Also: ``/diagnostics`` (1 Hz and on every mode change), ``~/timing``
(Float64MultiArray ``[command_seq, sensor_stamp_s, sensor_to_publish_s, compute_s, safe, changed, imu_stamp_s]``:
``safe`` 1 when the safe command went out, ``changed`` 1 when the filter clamped or rate-limited the controller's
command, ``imu_stamp_s`` the header stamp of the IMU sample used, NaN without one), e-stop
services ``~/estop``
and ``~/reset`` (std_srvs/Trigger; the latch is a file in ``state_dir``, so it survives a restart and only
``~/reset`` clears it). Latency statistics are logged at exit. An unhandled exception in a callback publishes a final
safe command and exits 1; a model that does not match the robot profile is refused (exit 2).

Dynamics monitor (parameter ``monitor``): on its alarm the node latches the e-stop, only warns, or
(``monitor_action: fallback``) hands the robot over to a fallback controller (e.g. mpc_node with ``commands_topic:
/fallback/commands``, planning on the live state from the start): from then on each command arriving on
``fallback_commands`` goes out through this node's safety filter at once, the policy no longer runs, and a fallback
silent for ``fallback_timeout_s`` latches the e-stop.

Goal-conditioned tasks (``robot_rl.deploy.goal_input``): the goal topic's type is the profile's ``topics.goal_type``:
std_msgs/Float64MultiArray (``array``) or geometry_msgs/PoseStamped (``pose``: the position, ``header.frame_id`` must
be the profile's ``base_frame``). A goal in another frame, non-finite, or outside the task's declared goal workspace
(``TaskSpec.goal_box``) is refused with a throttled warning that says why; the previous goal stays in use. Without a
goal (parameter ``goal`` empty, none accepted yet) a position robot holds where it was at the first step.
``~/goal`` (Float64MultiArray) is the goal in use, published at start and after every goal message (empty while
holding); ``/diagnostics`` carries it with the accepted / refused counts.

Legged velocity-tracking tasks (``env_id`` robot_rl/Go2Joystick-v0, or such an env_id in the artifact's
policy.json; ``robot_rl.deploy.legged_loop``): also subscribes the IMU (sensor_msgs/Imu, ``topics.imu``) and
``/cmd_vel`` (geometry_msgs/Twist: linear.x, linear.y, angular.z); the observation is
``robot_rl.core.legged_obs.locomotion_observation`` (the training function) from the accepted joint state and IMU
sample, the command (clipped to the task's range with a throttled warning; zero, i.e. stand, when older than
``cmd_vel_timeout_s``), the previous normalized action and the gait clock. A stale or non-finite IMU is a sensor
fault (hold), a tilt beyond the profile's ``safety.fall_tilt`` latches the e-stop (also in ``state_dir``).
``~/velocity_command`` (Float64MultiArray ``[vx, vy, yaw_rate, stale, gait_phase]``) is the command and gait-clock
phase of the observation the policy saw, every step (log replay rebuilds the observation from it).

Run: ``python -m robot_rl.nodes.policy_node --ros-args -p model:=models/<name> -p env_id:=robot_rl/CartpoleBalance-v0``
"""

from __future__ import annotations

import os
import sys
import time
from types import SimpleNamespace

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Twist
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Imu, JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger

from robot_rl.deploy.policy_loop import MONITOR_ACTIONS
from robot_rl.nodes._common import ParamReader, StartupError, run_node, stamp_to_s, steady_clock
from robot_rl.nodes._goal_topics import GoalTopics
from robot_rl.nodes._policy_setup import action_map, legged_task, load_policy, load_robot_profile, observation_builder

NAME = "policy_node"


class PolicyNode(GoalTopics, Node):
    """Policy node; ``mpc_node`` subclasses it and replaces the parameter hooks (``robot_parameters``,
    ``controller_parameters``), ``robot_and_period``, ``make_controller`` and ``check_health``.
    """

    NAME = NAME

    def __init__(self):
        super().__init__(self.NAME)
        from robot_rl.deploy.policy_loop import PolicyLoop, SensorGate
        from robot_rl.safety import SafetyFilter

        self.fatal_error: str | None = None
        self.goals = None  # GoalGate of a goal-conditioned policy
        self.env_id = ""  # the task env (set by make_controller)
        self.legged = None  # (task spec, center, half_range) of a legged task, set by make_controller
        a = self.node_parameters(ParamReader(self))
        profile, self.period_s = self.robot_and_period(a)
        self.profile = profile
        self.trigger = a.trigger
        goal = a.goal
        self.fault_injection = a.allow_fault_injection
        builder, controller, described = self.make_controller(a, profile)
        self.safety = SafetyFilter(profile)
        if self.legged is not None:
            if getattr(a, "monitor", "") not in ("", "none"):
                raise StartupError("parameter 'monitor': the dynamics monitor does not cover legged tasks yet")
            builder = self._legged_loop(a, profile, controller)
        else:
            try:
                self.goals = self._goal_gate(builder.goal_dim, profile, goal) if builder.goal_dim else None
                self.loop = PolicyLoop(self.safety, builder, controller,
                                       goal=self.goals.goal if self.goals is not None else goal or None,
                                       control_period_s=self.period_s,
                                       policy_errors=getattr(self, "policy_errors", ()), hold_without_goal=True,
                                       monitor=self._monitor(a, profile),
                                       monitor_action=getattr(a, "monitor_action", "estop"),
                                       fallback_timeout_s=getattr(a, "fallback_timeout_s", 0.0)
                                       or profile.safety.sensor_timeout_s)
            except ValueError as exc:
                raise StartupError(f"parameter 'goal': {exc}") from None
        self._open_latch(a.state_dir)
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        topics = profile.topics
        self.commands_topic = a.commands_topic or topics.commands
        self.pub_cmd = self.create_publisher(Float64MultiArray, self.commands_topic, qos)
        self.pub_diag = self.create_publisher(DiagnosticArray, topics.diagnostics, qos)
        self.pub_timing = self.create_publisher(Float64MultiArray, "~/timing", qos)
        self.create_subscription(JointState, topics.joint_states, self._on_joint_state, qos)
        if self.goals is not None:
            described += self._goal_topics(topics, qos)
        if self.legged is not None:
            self.create_subscription(Imu, topics.imu, self._on_imu, qos)
            self.create_subscription(Twist, topics.cmd_vel, self._on_cmd_vel, qos)
            self.pub_vel = self.create_publisher(Float64MultiArray, "~/velocity_command", qos)
            self._vel_msg = Float64MultiArray(data=[0.0, 0.0, 0.0, 1.0])
            v = self.loop.velocity
            described += (f"; legged task {self.legged[0].name}: imu on {topics.imu}, cmd_vel on {topics.cmd_vel} "
                          f"(range {v.low.tolist()} .. {v.high.tolist()}, stale after {v.timeout_s} s)")
        self.fallback_topic = ""
        if getattr(self.loop, "monitor_action", "") == "fallback":
            if self.loop.monitor is None:
                raise StartupError("parameter 'monitor_action': fallback needs a dynamics monitor (parameter "
                                   "'monitor')")
            self.fallback_topic = a.fallback_commands
            self.create_subscription(Float64MultiArray, self.fallback_topic, self._on_fallback, qos)
            described += (f"; on the monitor's alarm hands over to the fallback controller's commands on "
                          f"{self.fallback_topic} (silent for {self.loop.fallback_timeout_s} s: e-stop)")
        self.create_service(Trigger, "~/estop", self._on_estop)
        self.create_service(Trigger, "~/reset", self._on_reset)
        if self.fault_injection:
            self.create_service(Trigger, "~/inject_fault", self._on_inject)
        self._init_step_state()
        self._gate = SensorGate(self.period_s, profile.sensor_period_s)
        self.create_timer(self.period_s, self._on_timer, clock=steady_clock())
        self.get_logger().info(
            f"robot {profile.name}: {described}, inputs {list(builder.names)}, period {self.period_s} s "
            f"(trigger {self.trigger}), commands on {self.commands_topic}, e-stop latch {self.latch.path}")
        if self.goals is not None:
            self._publish_goal()
            if self.loop.holding:
                self.get_logger().warning(f"no goal yet: holding position until a goal arrives on {topics.goal}")

    def _open_latch(self, state_dir: str) -> None:
        """Open the persistent e-stop latch in ``state_dir`` (``auto`` or empty: ~/.local/state/robot_rl/<node name>);
        if it was tripped before this start, the node starts in e-stop.
        """
        from robot_rl.deploy.estop_latch import EstopLatch

        if state_dir in ("", "auto"):
            state_dir = os.path.join(os.path.expanduser("~/.local/state/robot_rl"), self.get_name())
        self.latch = EstopLatch(state_dir)
        latched = self.latch.tripped()
        self._latch_written = bool(latched)
        if latched:
            self.safety.estop(f"latched before start: {latched}")
            self.get_logger().error(f"e-stop latched ({latched}); call {self.get_name()}/reset to clear")

    def _init_step_state(self) -> None:
        """The control steps' bookkeeping: fault injection, sequence number, last mode and diagnostics time, the
        reused command message.
        """
        self._inject = False
        self._monitor_reported = False
        self._final_sent = False
        self._seq = 0
        self._imu_stamp_s = float("nan")  # header stamp of the last accepted IMU sample (~/timing names it)
        self._last_mode = ""
        self._last_diag_s = 0.0
        self._cmd_msg = Float64MultiArray()
        self._last_sensor_act_s = -np.inf  # steady time of the last action in a joint-state callback

    @classmethod
    def node_parameters(cls, p: ParamReader) -> SimpleNamespace:
        """Declare every parameter of the node and return their values: the robot's and the controller's
        (``robot_parameters`` / ``controller_parameters``, which mpc_node replaces) and the shared ones. ``--help``
        lists the parameters from here (on a ``ParameterCatalog``), so nothing is loaded or built here. (Not named
        ``declare_parameters``: rclpy's ``Node`` has a method of that name and calls it.)
        """
        return SimpleNamespace(
            **cls.robot_parameters(p),
            trigger=p.str("trigger", "sensor", "sensor: act on the first joint-state message at or after each "
                          "control period boundary (lowest latency; a timer stays as the stale-sensor watchdog); "
                          "timer: act every control period on the latest sample", choices=("sensor", "timer")),
            state_dir=p.str("state_dir", "auto", "directory of the persistent e-stop latch; auto (or empty): "
                            "~/.local/state/robot_rl/<node name>"),
            goal=p.floats("goal", [], "initial goal for goal-conditioned policies (task units, in the base frame; "
                          "checked like a goal message); empty: hold position until a goal arrives"),
            allow_fault_injection=p.bool("allow_fault_injection", False, "testing only: offer ~/inject_fault, "
                                         "which makes the next control step raise"),
            commands_topic=p.str("commands_topic", "", "topic of the commands; empty: the robot profile's "
                                 "topics.commands (another topic, e.g. /fallback/commands, runs this node as "
                                 "policy_node's fallback controller)"),
            **cls.controller_parameters(p),
        )

    @classmethod
    def robot_parameters(cls, p: ParamReader) -> dict:
        """Declare the robot and control-period parameters."""
        return {"robot": p.str("robot", "cartpole", "robot profile name (hardware/<robot>.yaml) or path"),
                "control_period_s": p.float("control_period_s", 0.0, "control period [s] (steady clock); 0: the "
                                            "profile's control_period_s", min_value=0.0)}

    @classmethod
    def controller_parameters(cls, p: ParamReader) -> dict:
        """Declare the controller's parameters."""
        return {"model": p.str("model", "", "policy artifact directory (policy.onnx + policy.json); required"),
                "env_id": p.str("env_id", "auto", "env whose observation layout the policy was trained on; auto "
                                "(or empty): the env_id recorded in the artifact's policy.json"),
                "cmd_vel_timeout_s": p.float("cmd_vel_timeout_s", 0.5, "legged tasks: a /cmd_vel command older "
                                             "than this [s] is replaced by zero velocity (stand)", min_value=1e-3),
                "monitor": p.str("monitor", "", "dynamics monitor directory made by `robot-rl monitor MODEL` (e.g. "
                                 "<model>/monitor); empty or none: no monitor"),
                "monitor_action": p.str("monitor_action", "estop", "on the monitor's alarm: estop (latch the e-stop: "
                                        "the safe command), warn (report it on /diagnostics only) or fallback "
                                        "(hand the robot to the controller publishing on fallback_commands, e.g. "
                                        "mpc_node with commands_topic set; its commands pass this node's safety "
                                        "filter)", choices=MONITOR_ACTIONS),
                "fallback_commands": p.str("fallback_commands", "/fallback/commands", "monitor_action fallback: "
                                           "topic of the fallback controller's commands (Float64MultiArray, robot "
                                           "units)"),
                "fallback_timeout_s": p.float("fallback_timeout_s", 0.0, "monitor_action fallback: after the "
                                              "hand-over, a fallback silent for this long [s] latches the e-stop; 0: "
                                              "the profile's safety.sensor_timeout_s", min_value=0.0)}

    def robot_and_period(self, a: SimpleNamespace):
        """(robot profile, control period [s]) from the parameter values ``a``."""
        profile = load_robot_profile(a.robot)
        return profile, a.control_period_s or profile.control_period_s

    def make_controller(self, a: SimpleNamespace, profile):
        """(input builder, ``f(input) -> command``, description) from the parameter values ``a``."""
        model, env_id = a.model, a.env_id
        policy = None
        if env_id in ("", "auto"):
            policy = load_policy(model, profile, None)
            env_id = str(policy.sidecar.get("env_id", ""))
            if not env_id:
                raise StartupError(f"parameter 'env_id': the artifact {model} records no env_id; set env_id")
        self.env_id = env_id
        spec = legged_task(env_id)
        if spec is not None:
            return self._legged_controller(model, env_id, spec, profile, policy)
        if policy is not None:
            builder = observation_builder(env_id, profile)
            if tuple(policy.obs_names) != tuple(builder.names):
                raise StartupError(f"parameter 'model': observation layout: expected {list(builder.names)} "
                                   f"(env {env_id}), got {list(policy.obs_names)}")
        else:
            builder = observation_builder(env_id, profile)
            policy = load_policy(model, profile, builder.names)
        from robot_rl.export.runtime import PolicyInputError, PolicyOutputError

        self.policy_errors = (PolicyInputError, PolicyOutputError)
        self.policy = policy
        return builder, policy, f"model {model}"

    def _monitor(self, a: SimpleNamespace, profile):
        """The policy's dynamics monitor (parameter ``monitor``), None without one."""
        from robot_rl.nodes._policy_setup import load_monitor

        if getattr(a, "monitor", "") in ("", "none"):
            return None
        return load_monitor(a.monitor, profile, self.policy)

    def _legged_controller(self, model: str, env_id: str, spec, profile, policy):
        """make_controller for a legged task: the policy checked against the task's observation layout."""
        from robot_rl.core.legged_obs import observation_names
        from robot_rl.export.runtime import PolicyInputError, PolicyOutputError

        if spec.robot != profile.name:
            raise StartupError(f"parameter 'env_id': env {env_id!r} is for robot {spec.robot!r}, not "
                               f"{profile.name!r}")
        if not profile.imu_site or len(profile.standing_pose) != len(profile.command_joints):
            raise StartupError(f"parameter 'robot': legged task {env_id!r} needs an imu_site and a standing_pose "
                               f"in robot profile {profile.name!r}")
        names = observation_names(profile.command_joints)
        if policy is None:
            policy = load_policy(model, profile, names)
        elif list(policy.obs_names) != names:
            raise StartupError(f"parameter 'model': observation layout: expected {names} (env {env_id}), got "
                               f"{list(policy.obs_names)}")
        center, half = action_map(policy, model)
        self.legged = (spec, center, half)
        self.policy_errors = (PolicyInputError, PolicyOutputError)
        self.policy = policy
        return None, policy, f"model {model}"

    def _legged_loop(self, a: SimpleNamespace, profile, policy):
        """The legged control loop (``self.loop``); returns its input builder."""
        from robot_rl.deploy.legged_loop import LocomotionInputs, LocomotionLoop, VelocityCommand

        spec, center, half = self.legged
        hi = np.asarray(spec.command_max, dtype=np.float64)
        velocity = VelocityCommand([spec.command_min_vx, -hi[1], -hi[2]], hi, a.cmd_vel_timeout_s)
        inputs = LocomotionInputs(self.safety, standing_pose=profile.standing_pose, center=center, half_range=half,
                                  gait_hz=spec.gait_hz, control_period_s=self.period_s)
        self.loop = LocomotionLoop(self.safety, inputs, policy, velocity, control_period_s=self.period_s,
                                   policy_errors=self.policy_errors)
        return inputs

    def withhold(self, status) -> bool:
        """True when this step's command is not to be published (mpc_node before its first plan); never for a safe
        command.
        """
        return False

    def check_health(self) -> str | None:
        """A fault that must stop the node (returned as text), checked every control period; None when healthy."""
        return None

    # ------------------------------------------------------------------ callbacks
    def _on_joint_state(self, msg: JointState) -> None:
        now = time.monotonic()
        clock_s = self.get_clock().now().nanoseconds * 1e-9
        self.loop.on_joint_state(msg.name, msg.position, msg.velocity, msg.effort, stamp_to_s(msg.header.stamp),
                                 now, clock_s=clock_s)
        if self.trigger == "sensor" and not self.loop.fallback_active and self._gate.due(now):
            self._last_sensor_act_s = now
            self._act(now)

    def _on_fallback(self, msg: Float64MultiArray) -> None:
        """A fallback controller's command: kept; after the monitor's hand-over each one is acted on at once."""
        now = time.monotonic()
        if not self.loop.set_fallback_command(msg.data, now):
            self.get_logger().warning(f"refused fallback command {list(msg.data)} on {self.fallback_topic}: "
                                      f"expected {self.safety.n_cmd} finite values", throttle_duration_sec=1.0)
        elif self.loop.fallback_active:
            self._last_sensor_act_s = now
            self._act(now)

    def _on_imu(self, msg: Imu) -> None:
        o, g = msg.orientation, msg.angular_velocity
        if not self.safety.on_imu((o.w, o.x, o.y, o.z), (g.x, g.y, g.z), time.monotonic()):
            self.get_logger().warning(f"rejected IMU sample: {self.safety.last_rejection}",
                                      throttle_duration_sec=1.0)
        else:
            self._imu_stamp_s = msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec

    def _on_cmd_vel(self, msg: Twist) -> None:
        v = self.loop.velocity
        clipped = v.on_twist(msg.linear.x, msg.linear.y, msg.angular.z, time.monotonic())
        if clipped is None:
            self.get_logger().warning(f"refused non-finite cmd_vel ({msg.linear.x}, {msg.linear.y}, "
                                      f"{msg.angular.z})", throttle_duration_sec=1.0)
        elif clipped:
            self.get_logger().warning(
                f"cmd_vel ({msg.linear.x:.3g}, {msg.linear.y:.3g}, {msg.angular.z:.3g}) outside the task's range "
                f"{v.low.tolist()} .. {v.high.tolist()}: clipped to {v.value.tolist()}", throttle_duration_sec=1.0)

    def _on_timer(self) -> None:
        now = time.monotonic()
        if self._inject:
            raise RuntimeError("injected fault (allow_fault_injection): unhandled exception in the control step")
        problem = self.check_health()
        if problem:
            self.fatal_error = problem  # run_node publishes the safe command and exits 1
            return
        # sensor trigger (and after a hand-over to the fallback, which acts on its commands): the timer acts (every
        # period) only while messages have stopped: no message acted on for 1.5 periods; the filter's stale-sensor
        # watchdog (the loop's fallback timeout) then sends the safe command within its bound
        if (self.trigger == "timer" and not self.loop.fallback_active) or \
                now - self._last_sensor_act_s > 1.5 * self.period_s:
            self._act(now)
        if now - self._last_diag_s >= 1.0:
            self._publish_diagnostics()

    def _act(self, start: float) -> None:
        errors = self.loop.policy_errors
        phase = self.loop.inputs.phase if self.legged is not None else 0.0
        command, status, fresh = self.loop.step(start)
        if self.loop.policy_errors != errors:
            self.get_logger().error(f"policy failed ({self.loop.policy_errors} times), safe command sent: "
                                    f"{self.loop.last_policy_error}", throttle_duration_sec=1.0)
        if self.withhold(status):
            return
        self._cmd_msg.data = command.tolist()
        self.pub_cmd.publish(self._cmd_msg)
        end = time.monotonic()
        if self.legged is not None:
            c = self.loop.inputs.command
            self._vel_msg.data = [float(c[0]), float(c[1]), float(c[2]), float(self.loop.velocity.stale),
                                  float(phase)]
            self.pub_vel.publish(self._vel_msg)
        self.loop.record_publish(end, start, fresh)
        self._seq += 1
        age = end - self.loop.last_rx_s if fresh else float("nan")
        self.pub_timing.publish(Float64MultiArray(data=[float(self._seq), self.loop.last_stamp_s, age, end - start,
                                                        float(status.safe),
                                                        float(status.clamped or status.rate_limited),
                                                        self._imu_stamp_s]))
        if getattr(self.loop, "monitor_alarm", "") and not self._monitor_reported:
            self._monitor_reported = True
            handover = f": handed over to the fallback controller on {self.fallback_topic}" \
                if self.loop.monitor_action == "fallback" else ""
            self.get_logger().error(f"{self.loop.monitor_alarm} ({self.loop.monitor_action}{handover})")
            self._publish_diagnostics()
        if status.mode == "estop" and not self._latch_written:  # e.g. a fall: persists like the e-stop service
            self._latch_written = True
            self.latch.trip(status.message)
        if status.mode != self._last_mode:
            if status.mode == "normal":
                self.get_logger().info(f"mode normal: {status.message}")
            else:
                self.get_logger().warning(f"mode {status.mode}: {status.message}")
            self._last_mode = status.mode
            self._publish_diagnostics()

    def _on_estop(self, _req, resp):
        reason = f"e-stop service called at {time.strftime('%Y-%m-%d %H:%M:%S')}"
        self.latch.trip(reason)
        self._latch_written = True
        self.safety.estop(reason)
        self._act(time.monotonic())  # the safe command goes out now, not at the next tick
        resp.success, resp.message = True, f"e-stop latched ({self.latch.path}); call reset to clear"
        self.get_logger().error(resp.message)
        return resp

    def _on_reset(self, _req, resp):
        was = self.latch.tripped() or (self.safety.estopped and "in memory")
        self.latch.clear()
        self._latch_written = False
        self.safety.reset()
        resp.success = True
        resp.message = f"e-stop cleared (was: {was})" if was else "no e-stop was latched"
        self.get_logger().warning(resp.message)
        return resp

    def _on_inject(self, _req, resp):
        self._inject = True
        resp.success, resp.message = True, "the next control step raises"
        return resp

    # ------------------------------------------------------------------ outputs
    def _publish_diagnostics(self) -> None:
        self._last_diag_s = time.monotonic()
        d = self.safety.diagnostics()
        level = {"OK": DiagnosticStatus.OK, "WARN": DiagnosticStatus.WARN}.get(d["level"], DiagnosticStatus.ERROR)
        values = [KeyValue(key=k, value=str(v)) for k, v in d["values"].items()]
        # the last second of samples: percentiles of the whole run would sort up to the stats' buffer (milliseconds)
        # inside the control thread once a second; the whole run is logged at exit
        lat = self.loop.latency.summary(recent=max(1, round(1.0 / self.period_s)))
        values += [KeyValue(key=f"latency_{k}", value=f"{v:.4g}") for k, v in lat.items()]
        values.append(KeyValue(key="trigger", value=self.trigger))
        if self.goals is not None:
            g = self.loop.goal
            values += [KeyValue(key="goal", value="none (holding)" if g is None else str(g.tolist())),
                       KeyValue(key="goals_accepted", value=str(self.goals.accepted)),
                       KeyValue(key="goals_refused", value=str(self.goals.refused))]
        status = DiagnosticStatus(level=level, name=f"{self.get_name()}: safety", message=d["message"],
                                  hardware_id=self.profile.name, values=values)
        msg = DiagnosticArray(status=[status, *self._monitor_status()])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(msg)

    def _monitor_status(self) -> list[DiagnosticStatus]:
        mon = getattr(self.loop, "monitor", None)
        if mon is None:
            return []
        alarm, action = self.loop.monitor_alarm, self.loop.monitor_action
        level = DiagnosticStatus.OK if not alarm else \
            DiagnosticStatus.ERROR if action == "estop" or self.safety.estopped else DiagnosticStatus.WARN
        if alarm and action == "fallback":
            alarm += f"; handed over to the fallback controller on {self.fallback_topic}"
        values = [KeyValue(key=k, value=f"{v:.4g}") for k, v in (("score", mon.score), ("threshold", mon.threshold),
                                                                  ("peak", mon.peak), ("last", mon.last))]
        values += [KeyValue(key="alarm_periods", value=str(mon.alarms)), KeyValue(key="action", value=action)]
        if action == "fallback":
            values += [KeyValue(key="fallback_active", value=str(self.loop.fallback_active)),
                       KeyValue(key="fallback_commands", value=str(self.loop.fallback_commands)),
                       KeyValue(key="fallback_refused", value=str(self.loop.fallback_rejected))]
        return [DiagnosticStatus(level=level, name=f"{self.get_name()}: dynamics monitor",
                                 message=alarm or "the robot behaves like the training simulator",
                                 hardware_id=self.profile.name, values=values)]

    def fail_safe(self, clean: bool = False) -> None:
        """Publish the safe command (after an unhandled exception, before exiting non-zero; and on a clean stop)."""
        cmd = self.safety.safe_command(time.monotonic())
        self.pub_cmd.publish(Float64MultiArray(data=np.asarray(cmd, dtype=np.float64).tolist()))
        # The process exits next: give reliable DDS a moment to deliver the last command to every subscriber.
        self.pub_cmd.wait_for_all_acked(Duration(seconds=0.25))
        if not self._final_sent:
            text = f"published final safe command {cmd.tolist()}"
            if clean:
                self.get_logger().info(text)
            else:
                self.get_logger().error(text)
        self._final_sent = True

    def on_shutdown(self) -> None:
        # A clean stop also ends with the safe command: a forward command controller holds the last command.
        if not self._final_sent:
            self.fail_safe(clean=True)
        for stats in (self.loop.latency, self.loop.compute):
            self.get_logger().info(stats.format())


def main(argv=None) -> int:
    return run_node(NAME, PolicyNode, argv, parameters=PolicyNode.node_parameters)


if __name__ == "__main__":
    sys.exit(main())
