"""Build an MPC controller from a YAML config (``config/mpc_*.yaml``): the entry point of the ROS ``mpc_node``,
whose parameters are the fields of ``MpcConfig`` (dotted names for the sections: ``mpc.horizon``).

    ctl = build_mpc(load_config(MpcConfig, "config/mpc_cartpole.yaml"))
    x = ctl.state_from_joints(position, velocity)   # profile joint order (as mapped from /joint_states) -> [nx]
    ctl.controller.set_state(x, t_s); u = ctl.controller.action(x, t_s)   # u: profile command order, robot units

The planner model is the robot profile's MJCF (``hardware/<robot>.yaml``); one control period is
``round(profile.control_period_s / timestep)`` physics steps (or one step of a coarse copy, ``coarse_model``).
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
from robot_rl.control.mpc import IlqrPlanner, MPCController, MPCSettings, SamplingPlanner
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

    def __post_init__(self):
        if self.scenarios < 1 or self.warmup_iterations < 0 or self.nthread < 0:
            raise ValueError("scenarios must be >= 1, warmup_iterations and nthread >= 0")


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

    def warm_start(self, x: np.ndarray, rng: np.random.Generator | None = None) -> ilqr.Solution:
        """Cold-start plan from state ``x`` (a long iLQR solve from small random controls), installed as the
        controller's initial guess. Call once before ``start()``; takes ~0.5-2 s on the cart-pole.
        """
        T = self.controller.settings.horizon
        rng = np.random.default_rng(0) if rng is None else rng
        scale = np.where(np.isfinite(self.dynamics.u_max), 0.01 * self.dynamics.u_max, 0.01)
        sol = ilqr.solve(self.dynamics, self.cost, np.asarray(x, float),
                         scale * rng.standard_normal((T, self.dynamics.nu)),
                         ilqr.IlqrSettings(max_iterations=max(1, self.warmup_iterations)))
        self.controller.set_initial_guess(sol.U)
        return sol


def build_mpc(config: MpcConfig) -> MpcRuntime:
    """Controller, dynamics and cost from a config; errors name the mismatching part."""
    profile = load_profile(config.robot)
    model = profile.load_model()
    frame_skip = round(profile.control_period_s / model.opt.timestep)
    if frame_skip < 1 or abs(frame_skip * model.opt.timestep - profile.control_period_s) > 1e-9:
        raise ValueError(f"control_period_s={profile.control_period_s} s of robot {profile.name!r} is not a multiple "
                         f"of the MJCF timestep {model.opt.timestep} s")
    rng = np.random.default_rng(config.seed)
    scenarios = (perturbed_models(model, config.scenarios, rng, config.randomization) if config.scenarios > 1
                 else None)
    dyn = MujocoDynamics(model, frame_skip, scenario_models=scenarios, nthread=config.nthread,
                         coarse=config.coarse_model, backend=config.dynamics_backend)
    cost = Cost.from_yaml(find_asset(config.cost))
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
    ctl = MPCController(planner, config.mpc)
    return MpcRuntime(ctl, dyn, cost, profile, qadr, dadr, ctrl, config.warmup_iterations)
