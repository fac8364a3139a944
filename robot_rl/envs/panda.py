"""Goal-conditioned end-effector reach with the Franka Emika Panda in joint position control (PandaReach-v0).

The robot is ``hardware/panda.yaml``: MuJoCo Menagerie's Panda (with a Robotiq 2F-85 gripper held rigid, not
commanded) whose joints track position targets with the profile's PD gains and torque limits, plus gravity
compensation from the nominal model, as Franka's own joint position controller does (the arm's
:class:`robot_rl.envs.arm.ArmReachEnv` computes it).

Observation (Gymnasium-Robotics dict, as ``ArmReach-v0``): ``observation`` = ``[q (7) rad, qdot (7) rad/s,
ee (3) m]`` (profile joint order; ``ee`` the tool centre point, site ``pinch`` between the fingertips, by forward
kinematics of the measured joints, like Fetch's gripper position: the policy sees where the hand is, and nothing in
``observation`` depends on the goal, so relabeling stays valid), ``achieved_goal`` = the same ``ee``,
``desired_goal`` = target position [m], both in the base frame (``link0``, which stands at the world origin). For a
flat policy input use ``concat(observation, desired_goal)``.

Action: joint position targets from the normalized action ``a`` in [-1, 1], two kinds (task option ``action``):
``"delta"`` (default): ``target = q + action_scale * a`` (rad; ``q`` the measured joint positions the policy sees
in its observation, ``action_scale`` 0.05 rad: with the servos' kp/kv = 10 1/s an offset moves the joint at about
10 x offset rad/s, so at most about 0.5 rad/s), clipped to the joint limits; ``"absolute"``: ``target = home +
action_scale * a`` (home = the profile's ``standing_pose``, Menagerie's keyframe "home"; ``action_scale`` 1 rad, the
box cut at the joint limits).
Both are ``center + half_range * a`` with ``action_map()`` (plus the observed joints named by
``action_reference()`` for delta), the map the exporter bakes into the ONNX policy, which so outputs the targets the
robot is sent. Either way the policy is a memoryless function of what it observes (no integrator state on the robot
side). Delta is the default: the policy is a feedback law that only has to point the hand toward the goal, where an
absolute target has to encode the inverse kinematics to within the 2 cm success radius (docs/robots.md compares
the two). Safety on the real arm:
the safety filter clamps targets to the joint limits and limits their change to ``safety.max_command_rate``
(1.5 rad/s, below the 2.175 rad/s joint speed limit); the env applies the same rate limit, starting from the measured
position at reset as the filter does, so a policy never learns to rely on steps the robot would not execute.
Control period 0.02 s (0.002 s x 10), 100 steps (2 s).

Start: home + U(-0.1, 0.1) rad per joint. Goal: uniform in the workspace box ``GOAL_LOW``..``GOAL_HIGH`` in front
of the robot (x 0.3..0.7 m, y -0.3..0.3 m, z 0.1..0.6 m; every point reachable within the action box, checked by a
test with inverse kinematics); the task declares it as ``goal_box``, the workspace a deployed policy accepts goals
in (``robot_rl.deploy.goal_input``).

Reward (declared terms, ``reward_type="dense"``, the default): the goal terms ``distance`` (weight -1: minus the
distance [m]), ``precision`` and ``reached`` (1 within ``distance_threshold``, 0.02 m), and the costs ``effort``,
``posture``, ``action_rate`` (change from the previous action) and ``speed`` (joint velocities): see the weights
below; ``reward_type="sparse"`` is Gymnasium-Robotics' ``-(d > threshold)`` for HER-style relabeling and offline
goal-conditioned learning. Success: ``d <= 0.02`` m.
"""

from __future__ import annotations

import numpy as np

from robot_rl.envs.arm import ArmReachEnv, distance, reached, sparse_reach
from robot_rl.envs.task import TaskSpec, Term, goal, last_action, param, qpos, qvel, site
from robot_rl.envs.task import action as action_input

JOINTS = tuple(f"joint{i}" for i in range(1, 8))
HOME = (0.0, 0.0, 0.0, -1.57079, 0.0, 1.57079, -0.7853)
"""Menagerie's keyframe "home" [rad] (= hardware/panda.yaml ``standing_pose``; a test checks they agree)."""
GOAL_LOW = np.array([0.3, -0.3, 0.1])
"""Lower corner of the goal box in the base frame [m]."""
GOAL_HIGH = np.array([0.7, 0.3, 0.6])
"""Upper corner of the goal box in the base frame [m]."""
EE_SITE = "pinch"
TARGET_BODY = "scene/target"


def within(ee, target, distance_threshold):
    """1.0 within ``distance_threshold`` [m] of the target, else 0.0 (the success bonus)."""
    return (distance(ee, target) <= distance_threshold).astype(np.float64)


def precision(ee, target):
    """``1 - tanh(d / 0.01)``: 1 on the target, 0.54 at 5 mm, 0.04 at 2 cm; the pull to well inside the success
    radius that ``-d`` alone is too flat to give.
    """
    return 1.0 - np.tanh(distance(ee, target) / 0.01)


def effort(a1, a2, a3, a4, a5, a6, a7):
    """Sum of the squared normalized actions (delta actions: about the commanded joint speeds squared)."""
    return a1 * a1 + a2 * a2 + a3 * a3 + a4 * a4 + a5 * a5 + a6 * a6 + a7 * a7


def action_rate(a1, a2, a3, a4, a5, a6, a7, p1, p2, p3, p4, p5, p6, p7):
    """Sum of the squared changes of the normalized actions from the previous step (``p1..p7``): the cost of the
    step-to-step chatter a memoryless policy falls into at the goal (see ``RATE_WEIGHT``).
    """
    return ((a1 - p1) ** 2 + (a2 - p2) ** 2 + (a3 - p3) ** 2 + (a4 - p4) ** 2 + (a5 - p5) ** 2 + (a6 - p6) ** 2
            + (a7 - p7) ** 2)


def speed(v1, v2, v3, v4, v5, v6, v7):
    """Sum of the squared joint velocities [rad^2/s^2]: the cost of sweeping the arm's null space while the hand
    stays on the goal, which policies without it did at 0.2-0.4 rad/s per joint (see ``RATE_WEIGHT``).
    """
    return v1 * v1 + v2 * v2 + v3 * v3 + v4 * v4 + v5 * v5 + v6 * v6 + v7 * v7


def posture(q1, q2, q3, q4, q5, q6, q7):
    """Sum of the squared joint offsets from home [rad^2]: picks one arm pose out of the 4-D null space of a
    position-only reach (seven joints, three constraints), where the policy otherwise wanders.
    """
    h = HOME
    return ((q1 - h[0]) ** 2 + (q2 - h[1]) ** 2 + (q3 - h[2]) ** 2 + (q4 - h[3]) ** 2 + (q5 - h[4]) ** 2
            + (q6 - h[5]) ** 2 + (q7 - h[6]) ** 2)


def _initial_state(env, rng):
    home = np.asarray(env.profile.standing_pose)
    lo, hi = env.model.jnt_range[env.joint_qpos_addresses].T
    env.data.qpos[env.joint_qpos_addresses] = np.clip(home + rng.uniform(-0.1, 0.1, size=len(home)), lo, hi)
    env.data.qvel[:] = 0.0
    target = rng.uniform(GOAL_LOW, GOAL_HIGH)
    env.data.mocap_pos[env.target_mocap] = target
    return target


EFFORT_WEIGHT = 0.02
"""Weight of the ``effort`` cost (sum of squared normalized actions): without it the policy reached the goal in
0.5 s and then drifted away along the arm's null space, pushing joints at full speed (final distance 3-17 cm)."""
POSTURE_WEIGHT = 0.05
"""Weight of the ``posture`` cost (see ``posture``)."""
RATE_WEIGHT = 0.25
"""Weight of the ``action_rate`` cost. With effort and posture alone SAC's policy held the goal while switching its
actions step to step or sweeping the null space at 0.2-0.4 rad/s per joint, which latency and sensor noise turn into
centimetres at the hand; with ``action_rate`` and ``speed`` it held 81 instead of 68 of 100 goals under reality
samples (docs/robots.md, "Training")."""
SPEED_WEIGHT = 0.5
"""Weight of the ``speed`` cost (see ``RATE_WEIGHT``)."""
ACTIONS = {"delta": 0.05, "absolute": 1.0}
"""Action kinds and their default ``action_scale`` [rad] (see the module docstring)."""


def task(reward_type: str = "dense", distance_threshold: float = 0.02, action: str = "delta",
         action_scale: float | None = None) -> TaskSpec:
    """Reach a random end-effector target with the Panda; ``reward_type`` ``"dense"`` (-d + 1[d <= threshold]) or
    ``"sparse"`` (-(d > threshold)); ``action``: ``"delta"`` (targets = measured joints + scale x a) or
    ``"absolute"`` (home + scale x a); ``action_scale``: joint target offset of a unit action [rad] (default
    ``ACTIONS[action]``).
    """
    if reward_type not in ("sparse", "dense"):
        raise ValueError(f"reward_type must be 'sparse' or 'dense', got {reward_type!r}")
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {sorted(ACTIONS)}, got {action!r}")
    action_scale = ACTIONS[action] if action_scale is None else action_scale
    if not action_scale > 0:
        raise ValueError(f"action_scale must be > 0 [rad], got {action_scale}")
    if reward_type == "sparse":
        reward = (Term("reach", sparse_reach),)
    else:
        reward = (Term("distance", distance, -1.0), Term("precision", precision, 1.0),
                  Term("reached", within, 1.0), Term("effort", effort, -EFFORT_WEIGHT),
                  Term("posture", posture, -POSTURE_WEIGHT), Term("action_rate", action_rate, -RATE_WEIGHT),
                  Term("speed", speed, -SPEED_WEIGHT))
    observation = tuple((f"{n}_position", "pos", n, "rad") for n in JOINTS) + tuple(
        (f"{n}_velocity", "vel", n, "rad/s") for n in JOINTS) + tuple(
        (f"ee_{axis}", "site", f"{EE_SITE}:{axis}", "m") for axis in "xyz")
    return TaskSpec(
        name="PandaReach", robot="panda", frame_skip=10, max_episode_steps=100, observation=observation, goal_dim=3,
        inputs={"ee": site(EE_SITE), "target": goal(), "distance_threshold": param(distance_threshold),
                **{f"a{k + 1}": action_input(k) for k in range(len(JOINTS))},
                **{f"q{k + 1}": qpos(n) for k, n in enumerate(JOINTS)},
                **{f"p{k + 1}": last_action(k) for k in range(len(JOINTS))},
                **{f"v{k + 1}": qvel(n) for k, n in enumerate(JOINTS)}},
        reward=reward, success=Term("reached", reached), achieved_goal="ee", initial_state=_initial_state,
        goal_box=(tuple(GOAL_LOW.tolist()), tuple(GOAL_HIGH.tolist())),
        options={"reward_type": reward_type, "distance_threshold": float(distance_threshold), "action": action,
                 "action_scale": float(action_scale)})


class PandaReachEnv(ArmReachEnv):
    """The Panda's reach env: ``ArmReachEnv`` (dict observation, gravity compensation) with joint position targets
    (``measured q + action_scale * a`` or ``home + action_scale * a``) that change at most
    ``safety.max_command_rate`` (see module docstring).
    """

    def _load_model(self):
        p = self.profile
        home = np.asarray(p.standing_pose, dtype=np.float64)
        if p.command_interface != "position" or home.shape != (len(p.command_joints),):
            raise ValueError(f"{self.name}: robot {p.name!r} needs a position interface and a standing_pose")
        if self.action == "delta":  # any target within the joint limits
            lo, hi = np.asarray(p.command_min, dtype=np.float64), np.asarray(p.command_max, dtype=np.float64)
        else:
            lo = np.maximum(home - self.action_scale, p.command_min)
            hi = np.minimum(home + self.action_scale, p.command_max)

        def edit(spec):  # the target box as the servos' ctrlrange: MuJoCo clamps targets to it
            by_joint = {a.target: a for a in spec.actuators}
            for k, name in enumerate(p.command_joints):
                act = by_joint[name]
                act.ctrllimited = 1
                act.ctrlrange = [lo[k], hi[k]]

        return p.load_model(edit=edit)

    def _setup(self):
        super()._setup()
        p = self.profile
        self.target_mocap = int(self.model.body(TARGET_BODY).mocapid[0])
        self._max_step = p.safety.max_command_rate * self.control_dt  # [rad] per control step (inf: no limit)
        self._prev_target = np.zeros(self.model.nu)
        self._cmd_qadr = self._qadr[[p.joint_names.index(n) for n in p.command_joints]]
        # delta: the base env's ctrl = half * a (center 0); _before_physics adds the measured joints the policy saw
        self._obs_joint = np.array([p.joint_names.index(n) for n in p.command_joints], dtype=np.intp)
        self._seen_q = np.zeros(self.model.nu)
        self._lo, self._hi = self.model.actuator_ctrlrange[:, 0].copy(), self.model.actuator_ctrlrange[:, 1].copy()
        if self.action == "delta":
            self._ctrl_mid = np.zeros(self.model.nu)
            self._ctrl_half = np.full(self.model.nu, self.action_scale)
            self._ctrl_symmetric = True

    def _observe(self):
        obs = super()._observe()
        self._seen_q[:] = obs[self._obs_joint]  # float32, as the exported policy reads them
        return obs

    def reset(self, *, seed=None, options=None):
        out = super().reset(seed=seed, options=options)
        self._prev_target[:] = self._qpos[self._cmd_qadr]  # the safety filter ramps from where the robot is
        return out

    def set_joint_state(self, q, qd, goal=None) -> None:
        """``MujocoTaskEnv.set_joint_state``; the rate limit then ramps from ``q`` (a fresh start, as at reset)."""
        super().set_joint_state(q, qd, goal)
        self._prev_target[:] = self._qpos[self._cmd_qadr]
        self._seen_q[:] = self._qpos[self._cmd_qadr]

    def _before_physics(self):
        c, prev, step = self._ctrl, self._prev_target, self._max_step
        if self.action == "delta":
            c += self._seen_q
            np.clip(c, self._lo, self._hi, out=c)
        np.clip(c, prev - step, prev + step, out=c)
        prev[:] = c
        super()._before_physics()

    def action_map(self) -> tuple[np.ndarray, np.ndarray]:
        """``(center, half_range)``: a normalized action ``a`` commands joint targets ``center + half_range * a``
        [rad] (absolute: home + ``action_scale`` x a within the joint limits; delta: center 0, added to the
        measured joints named by ``action_reference``); the exported policy outputs these targets.
        """
        return self._ctrl_mid.copy(), self._ctrl_half.copy()

    def action_reference(self) -> list[str] | None:
        """Observation entries the targets are offsets from (delta actions: the measured joint positions, in
        command order), or None for absolute targets.
        """
        if self.action != "delta":
            return None
        return [self.obs_names[i] for i in self._obs_joint]

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        if self._renderer is None:
            import mujoco

            self._renderer = mujoco.Renderer(self.model, 240, 320)
        self._renderer.update_scene(self.data, camera="scene/front")  # (the robot's own cameras are hand cameras)
        return self._renderer.render()
