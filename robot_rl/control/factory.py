"""Build an MPC controller from a YAML config (``config/mpc_*.yaml``): the entry point of the ROS ``mpc_node``,
whose parameters are the fields of ``MpcConfig`` (dotted names for the sections: ``mpc.horizon``).

    ctl = build_mpc(load_config(MpcConfig, "config/mpc_cartpole.yaml"))
    x = ctl.state_from_joints(position, velocity)   # profile joint order (as mapped from /joint_states) -> [nx]
    ctl.controller.set_state(x, t_s); u = ctl.controller.action(x, t_s)   # u: profile command order, robot units

The planner model is the robot profile's MJCF (``hardware/<robot>.yaml``); one control period is
``round(profile.control_period_s / timestep)`` physics steps (or one step of a coarse copy, ``coarse_model``).
Planning-model options: ``gravity_compensation`` (the robot's controller cancels gravity: plan without it),
``contacts: false`` (no contact forces in the plan), ``jacobian: first_substep`` (one finite-difference call per
control period). A position-controlled robot's controls are joint position targets, clamped to the profile's
``command_min`` / ``command_max`` (the planner's control box and the model's ctrlrange), and its fallback holds
position (``HoldFallback``). Goal tasks: ``goal_term`` names the cost term whose target a goal sets at run time
(``MpcRuntime.set_goal``), ``env_id`` the task whose ``goal_box`` bounds goals (``mpc_node``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

import mujoco
import numpy as np

from robot_rl.control import ilqr
from robot_rl.control.costs import Cost
from robot_rl.control.dynamics import MujocoDynamics
from robot_rl.control.mpc import HoldFallback, IlqrPlanner, MPCController, MPCSettings, SamplingPlanner
from robot_rl.control.randomize import perturbed_models
from robot_rl.control.sampling import SamplingSettings
from robot_rl.core.assets import find_asset
from robot_rl.core.profile import RobotProfile, actuator_for_joint, load_profile


@dataclass(frozen=True)
class MpcConfig:
    """MPC controller config: an MPC YAML file, and field by field the ROS mpc_node's parameters (``mpc.horizon``)."""

    robot: str
    """Robot profile name (``hardware/<robot>.yaml``) or path; its MJCF is the planner's model."""
    cost: str
    """Cost YAML (``config/costs/<name>.yaml``), see docs/control.md."""
    planner: Literal["ilqr", "predictive", "cem", "mppi"] = "ilqr"
    """Trajectory optimizer."""
    mpc: MPCSettings = field(default_factory=MPCSettings)
    """Receding-horizon settings (horizon, budgets, deadline misses, delay)."""
    ilqr: ilqr.IlqrSettings = field(default_factory=lambda: ilqr.IlqrSettings(max_iterations=2))
    """iLQR settings per replan (planner ilqr)."""
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    """Sampling settings per replan (planner predictive / cem / mppi); ``method`` is ignored: ``planner`` chooses
    (mpc_node has no ``sampling.method`` parameter)."""
    scenarios: int = 1
    """Sampling planners: number of models scored per sample (1 = nominal; more = randomized copies)."""
    randomization: str = "default"
    """Randomization profile for the scenario models (``sim/randomization/<name>.yaml``)."""
    warmup_iterations: int = 100
    """iLQR iterations of the first (cold-start) plan from the first state."""
    seed: int = 0
    """Seed of the sampling noise and the scenario models."""
    nthread: int = 0
    """Threads for ``mujoco.rollout`` (0 = the planner thread itself)."""
    coarse_model: bool = False
    """Plan on a copy of the MJCF with timestep = control period (one physics step and one finite-difference
    Jacobian per control period, ~frame_skip x cheaper; MJPC style) instead of the exact frame_skip substeps."""
    dynamics_backend: Literal["auto", "python", "numba"] = "auto"
    """MuJoCo derivative and forward-pass loops: ``numba`` = compiled loops calling libmujoco directly (optional
    dependency; same results, no per-step interpreter work; a MuJoCo fatal error then ends the process),
    ``python`` = loops over the bindings (fatal errors raise ``mujoco.FatalError``), ``auto`` = numba when installed."""
    jacobian: Literal["chained", "first_substep"] = "chained"
    """Planner Jacobians of the exact model: ``chained`` = one ``mjd_transitionFD`` call per physics substep, chained
    over the control period; ``first_substep`` = one call per control period, its substep Jacobian raised to the
    period (``MujocoDynamics``: frame_skip x fewer calls; rollouts still step every substep)."""
    gravity_compensation: bool = False
    """The robot's own controller cancels gravity with the nominal model (Franka; PandaReach-v0 and sim_robot do
    the same): plan on the model without gravity, which is that exactly."""
    contacts: bool = True
    """False: plan with contacts disabled (free-space tasks; a Panda step then costs ~4x less). The robot still
    has them."""
    force_limits: bool = True
    """False: plan without the actuators' force limits (``forcerange``), a servo that never saturates. A saturated
    servo's Jacobian changes within one control period, which ``jacobian: first_substep`` cannot follow (its
    raised first-substep Jacobian then blows up); the robot still has the limits."""
    fusestatic: bool = False
    """Compile the planning model with MuJoCo's ``fusestatic`` (bodies welded to their parent merged into it: the
    same dynamics with fewer bodies; the Panda: 25 -> 19 bodies, a physics step ~25% cheaper)."""
    goal_term: str = ""
    """Goal tasks: the cost term whose target a goal sets (e.g. ``ee``, a ``site_position`` term); empty: no goals."""
    env_id: str = ""
    """Goal tasks: the task env whose declared ``goal_box`` (base frame) mpc_node accepts goals in, as policy_node
    does (e.g. ``robot_rl/PandaReach-v0``); needs ``goal_term``."""

    def __post_init__(self):
        if self.scenarios < 1 or self.warmup_iterations < 0 or self.nthread < 0:
            raise ValueError("scenarios must be >= 1, warmup_iterations and nthread >= 0")
        if bool(self.goal_term) != bool(self.env_id):
            raise ValueError(f"goal_term ({self.goal_term!r}) and env_id ({self.env_id!r}) go together: a goal sets "
                             "the term's target and must lie in the env's goal_box")


@dataclass
class MpcRuntime:
    """What ``build_mpc`` returns: the controller and the maps between robot and planner conventions."""

    controller: MPCController
    dynamics: MujocoDynamics
    cost: Cost
    profile: RobotProfile
    qpos_index: np.ndarray
    """qpos address of each profile joint (profile order)."""
    dof_index: np.ndarray
    """qvel address of each profile joint (profile order)."""
    ctrl_index: np.ndarray
    """actuator index of each command joint (profile command order)."""
    goal_term: str = ""
    """Cost term whose target ``set_goal`` replaces ("" = no goals)."""

    def state_from_joints(self, position: np.ndarray, velocity: np.ndarray) -> np.ndarray:
        """Profile-ordered joint positions [m or rad] and velocities -> planner state ``[qpos, qvel]``."""
        x = np.zeros(self.dynamics.nx)
        x[self.qpos_index] = position
        x[self.dynamics.nq + self.dof_index] = velocity
        return x

    def command_from_control(self, u: np.ndarray) -> np.ndarray:
        """Planner control (actuator order) -> command vector in profile command order (robot units)."""
        return np.asarray(u, float)[self.ctrl_index]

    warmup_iterations: int = 100
    """iLQR iterations of ``warm_start``."""

    @property
    def goal_dim(self) -> int:
        """Length of a goal (the goal term's target; 0 without goals)."""
        if not self.goal_term:
            return 0
        term = next(t for t in self.cost.config.terms if t.name == self.goal_term)
        return 3 if term.kind == "site_position" else 2 if term.kind == "planar_reach" else len(term.indices)

    def set_goal(self, goal) -> None:
        """Set the goal term's target (thread-safe: the planner's next replan uses the new cost)."""
        if not self.goal_term:
            raise ValueError("this MPC config has no goal_term: it takes no goals")
        g = np.asarray(goal, float).ravel()
        if g.shape != (self.goal_dim,) or not np.all(np.isfinite(g)):
            raise ValueError(f"goal for term {self.goal_term!r}: expected {self.goal_dim} finite values, got "
                             f"{g.tolist()}")
        self.cost = self.cost.with_target(self.goal_term, g)
        self.controller.planner.cost = self.cost

    def warm_start(self, x: np.ndarray, rng: np.random.Generator | None = None) -> ilqr.Solution:
        """Cold-start plan from state ``x`` (a long iLQR solve from small random controls, or for position targets
        from holding the measured position, and the same guess solved by horizon continuation; the cheaper plan
        wins), installed as the controller's initial guess. Call once before ``start()``; takes ~0.5-2 s on the
        cart-pole.
        """
        T = self.controller.settings.horizon
        rng = np.random.default_rng(0) if rng is None else rng
        scale = np.where(np.isfinite(self.dynamics.u_max), 0.01 * self.dynamics.u_max, 0.01)
        U0 = scale * rng.standard_normal((T, self.dynamics.nu))
        hold = self.controller.fallback
        if isinstance(hold, HoldFallback):  # position targets: start from holding the measured position
            U0 = np.asarray(x, float)[hold.index] + 0.01 * rng.standard_normal((T, self.dynamics.nu))
        x = np.asarray(x, float)
        sol = ilqr.solve(self.dynamics, self.cost, x, U0,
                         ilqr.IlqrSettings(max_iterations=max(1, self.warmup_iterations)))
        # Horizon continuation: solve a short horizon first and extend the plan (the initial guess's tail) stage by
        # stage. From near an unstable equilibrium the full-horizon rollout of a small guess has fallen by its end,
        # and iLQR then settles in a far local minimum (the cart-pole from 0.016 rad off upright: a plan that lets
        # the pole fall and swing a full turn, cost 90.7, against 0.005 for holding it). The better plan is kept.
        stages = sorted({max(2, T // 8), max(2, T // 4), max(2, T // 2), T})
        per_stage = max(1, self.warmup_iterations // len(stages))
        U = U0[: stages[0]]
        for h in stages:
            U = np.concatenate([U, U0[len(U):h]])
            staged = ilqr.solve(self.dynamics, self.cost, x, U, ilqr.IlqrSettings(max_iterations=per_stage))
            U = staged.U
        if staged.cost < sol.cost:
            sol = staged
        self.controller.set_initial_guess(sol.U, sol.X, sol.K)
        return sol


def build_mpc(config: MpcConfig) -> MpcRuntime:
    """Controller, dynamics and cost from a config; errors name the mismatching part."""
    profile = load_profile(config.robot)
    model = planning_model(profile, config)
    frame_skip = round(profile.control_period_s / model.opt.timestep)
    if frame_skip < 1 or abs(frame_skip * model.opt.timestep - profile.control_period_s) > 1e-9:
        raise ValueError(f"control_period_s={profile.control_period_s} s of robot {profile.name!r} is not a multiple "
                         f"of the MJCF timestep {model.opt.timestep} s")
    rng = np.random.default_rng(config.seed)
    scenarios = (perturbed_models(model, config.scenarios, rng, config.randomization) if config.scenarios > 1
                 else None)
    dyn = MujocoDynamics(model, frame_skip, scenario_models=scenarios, nthread=config.nthread,
                         coarse=config.coarse_model, backend=config.dynamics_backend, jacobian=config.jacobian)
    try:
        cost = Cost.from_yaml(find_asset(config.cost), model=dyn.model)
    except ValueError as exc:
        raise ValueError(f"cost {config.cost!r} on robot {profile.name!r}: {exc}") from None
    if config.goal_term:
        _check_goal_term(cost, config, profile, profile.load_model())  # unfused: base_frame may be a welded body
    if (cost.nx, cost.nu) != (dyn.nx, dyn.nu):
        raise ValueError(f"cost {config.cost!r} expects nx={cost.nx}, nu={cost.nu}; robot {profile.name!r} model "
                         f"has nx={dyn.nx}, nu={dyn.nu}")
    if abs(config.mpc.control_period_s - dyn.dt) > 1e-9:
        raise ValueError(f"mpc.control_period_s={config.mpc.control_period_s} s differs from robot "
                         f"{profile.name!r} control_period_s={dyn.dt} s")
    if config.planner == "ilqr":
        planner = IlqrPlanner(dyn, cost, config.ilqr)
    else:
        planner = SamplingPlanner(dyn, cost, dataclasses.replace(config.sampling, method=config.planner), rng=rng)
    qadr = np.array([model.jnt_qposadr[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, j)]
                     for j in profile.joint_names])
    dadr = np.array([model.jnt_dofadr[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, j)]
                     for j in profile.joint_names])
    if sorted(qadr.tolist()) != list(range(model.nq)):
        raise ValueError(f"robot {profile.name!r}: profile joints {profile.joint_names} must cover every model joint "
                         f"for state feedback (model nq={model.nq})")
    ctrl = np.array([actuator_for_joint(model, j) for j in profile.command_joints])
    fallback = None
    if profile.command_interface == "position":  # hold, in actuator order: the qpos of each actuator's joint
        fallback = HoldFallback([model.jnt_qposadr[model.actuator_trnid[a, 0]] for a in range(model.nu)])
    ctl = MPCController(planner, config.mpc, fallback=fallback)
    return MpcRuntime(ctl, dyn, cost, profile, qadr, dadr, ctrl, config.goal_term, config.warmup_iterations)


def planning_model(profile: RobotProfile, config: MpcConfig) -> mujoco.MjModel:
    """The robot's MJCF as the planner models it: without gravity (``gravity_compensation``), without contacts
    (``contacts: false``), welded bodies fused (``fusestatic``), and for a position interface the servos' targets
    limited to the profile's command box (``command_min`` / ``command_max``).
    """
    if config.fusestatic:
        def fuse(spec):
            spec.compiler.fusestatic = True

        model = profile.load_model(edit=fuse)
    else:
        model = profile.load_model()
    if config.gravity_compensation:
        model.opt.gravity[:] = 0.0
    if not config.contacts:
        model.opt.disableflags |= int(mujoco.mjtDisableBit.mjDSBL_CONTACT)
    if not config.force_limits:
        model.actuator_forcelimited[:] = 0
    if profile.command_interface == "position":
        for k, name in enumerate(profile.command_joints):
            a = actuator_for_joint(model, name)
            model.actuator_ctrlrange[a] = (profile.command_min[k], profile.command_max[k])
            model.actuator_ctrllimited[a] = 1
    return model


def _check_goal_term(cost: Cost, config: MpcConfig, profile: RobotProfile, model: mujoco.MjModel) -> None:
    """A goal term exists, takes a settable target, and its frame is the base frame goals are given in."""
    terms = {t.name: t for t in cost.config.terms}
    term = terms.get(config.goal_term)
    if term is None:
        raise ValueError(f"goal_term {config.goal_term!r} is not a term of cost {config.cost!r}; terms: "
                         f"{list(terms)}")
    if term.kind not in ("site_position", "planar_reach", "state"):
        raise ValueError(f"goal_term {config.goal_term!r} is a {term.kind!r} term; a goal sets the target of a "
                         "site_position, planar_reach or state term")
    if term.kind == "site_position" and profile.base_frame:
        bid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, profile.base_frame)
        if bid < 0:
            raise ValueError(f"robot {profile.name!r}: base_frame {profile.base_frame!r} is not a body of its model")
        d = mujoco.MjData(model)
        mujoco.mj_kinematics(model, d)
        if not (np.allclose(d.xpos[bid], 0.0, atol=1e-9) and np.allclose(d.xmat[bid], np.eye(3).ravel(), atol=1e-9)):
            raise ValueError(f"goal_term {config.goal_term!r}: site positions are in the world frame, goals in "
                             f"base_frame {profile.base_frame!r}, which is not at the world origin "
                             f"(pos {d.xpos[bid].tolist()}); no transform is applied")
