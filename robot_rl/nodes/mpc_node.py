"""mpc_node: receding-horizon MPC on a robot (``robot_rl.control.mpc.MPCController``) through the safety filter.

A planner thread (iLQR or predictive sampling, MuJoCo dynamics of the robot's MJCF) replans from the newest measured
state with a wall-clock budget (``replan_budget_s``); the control loop runs every ``control_period_s`` of steady
time and applies ``u = U[i] + K[i] (x - X[i])`` from the latest plan. Everything else (topics, safety filter,
e-stop latch and services, diagnostics, timing, exit codes) is the policy node's. A planner-thread exception
stops the node: final safe command, exit 1 (``allow_fault_injection`` + ``~/inject_fault`` makes the next replan
raise). Planner statistics (solve time p50/p99/max, deadline misses, fallbacks) are logged at exit.

Run: ``python -m robot_rl.nodes.mpc_node --ros-args -p robot:=cartpole -p planner:=ilqr``
"""

from __future__ import annotations

import sys
import time

from robot_rl.nodes._common import ParamReader, StartupError, run_node
from robot_rl.nodes.policy_node import PolicyNode

NAME = "mpc_node"


class MpcNode(PolicyNode):
    NAME = NAME

    def make_controller(self, p: ParamReader, profile):
        import mujoco

        from robot_rl.control import ilqr, mpc, sampling
        from robot_rl.control.costs import Cost
        from robot_rl.control.dynamics import MujocoDynamics
        from robot_rl.core.assets import find_asset
        from robot_rl.deploy.state_builder import StateBuilder

        planner_kind = p.str("planner", "ilqr", "ilqr (iLQR with feedback gains) or sampling (predictive sampling)",
                             choices=("ilqr", "sampling"))
        cost_path = p.str("cost", "config/costs/cartpole_swingup.yaml", "planner cost YAML (docs/control.md)")
        horizon = p.int("horizon", 50, "plan length [control periods]", min_value=1)
        budget = p.float("replan_budget_s", 0.0, "wall-clock budget of one replan [s]; 0: one control period",
                         min_value=0.0) or self.period_s
        iterations = p.int("iterations", 2, "iLQR iterations per replan", min_value=1)
        samples = p.int("samples", 64, "sampling planner: rollouts per replan", min_value=2)
        planning_model = p.str("planning_model", "exact", "exact: plan on the MJCF timestep (frame_skip physics "
                               "steps per control period); coarse: plan on a copy whose timestep is the control "
                               "period (one physics step and one derivative call per period: about half the replan "
                               "time, slightly less accurate)", choices=("exact", "coarse"))
        dyn_backend = p.str("dynamics_backend", "auto", "MuJoCo derivative / forward-pass loops: numba (compiled, "
                            "calls libmujoco directly; a MuJoCo fatal error ends the node), python (loops over the "
                            "bindings), auto (numba when installed)", choices=("auto", "python", "numba"))
        misses = p.int("max_missed_deadlines", 3, "consecutive late replans before the fallback command",
                       min_value=1)
        model = mujoco.MjModel.from_xml_path(str(profile.mjcf_path()))
        frame_skip = round(self.period_s / model.opt.timestep)
        if frame_skip < 1 or abs(frame_skip * model.opt.timestep - self.period_s) > 1e-9:
            raise StartupError(f"parameter 'control_period_s': {self.period_s} s is not a multiple of the MJCF "
                               f"timestep {model.opt.timestep} s")
        try:
            dynamics = MujocoDynamics(model, frame_skip, coarse=planning_model == "coarse", backend=dyn_backend)
            cost = Cost.from_yaml(find_asset(cost_path))
            builder = StateBuilder(model, profile.joint_names)
        except (ValueError, KeyError, FileNotFoundError) as exc:
            raise StartupError(f"parameter 'cost'/'robot': {exc}") from None
        if (cost.config.nx, cost.config.nu) != (dynamics.nx, dynamics.nu):
            raise StartupError(f"parameter 'cost': {cost_path} expects nx={cost.config.nx}, nu={cost.config.nu}; "
                               f"the {profile.name} model has nx={dynamics.nx}, nu={dynamics.nu}")
        try:
            if planner_kind == "ilqr":
                planner = mpc.IlqrPlanner(dynamics, cost, ilqr.IlqrSettings(max_iterations=iterations))
            else:
                planner = mpc.SamplingPlanner(dynamics, cost, sampling.SamplingSettings(
                    num_samples=samples, num_elites=min(8, samples)))
            settings = mpc.MPCSettings(horizon=horizon, control_period_s=self.period_s, replan_budget_s=budget,
                                       replan_period_s=self.period_s, max_missed_deadlines=misses)
        except ValueError as exc:
            raise StartupError(f"planner parameters: {exc}") from None
        self._planner_fault = False
        optimize = planner.optimize

        def optimize_checked(*args, **kwargs):
            if self._planner_fault:  # allow_fault_injection: an exception inside the planner thread
                raise RuntimeError("injected fault (allow_fault_injection): exception in the planner thread")
            return optimize(*args, **kwargs)

        planner.optimize = optimize_checked
        self.mpc = mpc.MPCController(planner, settings, u_min=profile.command_min, u_max=profile.command_max,
                                     clock=time.monotonic)
        self.mpc.start()

        def act(x):
            now = time.monotonic()
            self.mpc.set_state(x, now)
            return self.mpc.action(x, now)

        return builder, act, (f"{planner_kind} MPC (horizon {horizon}, budget {budget} s, {planning_model} planning "
                              f"model, cost {cost_path})")

    def _on_inject(self, _req, resp):
        self._planner_fault = True
        resp.success, resp.message = True, "the next replan raises in the planner thread"
        return resp

    def check_health(self) -> str | None:
        err = self.mpc.last_error
        return f"planner thread failed: {err}" if err else None

    def on_shutdown(self) -> None:
        self.mpc.stop()
        super().on_shutdown()
        stats = self.mpc.stats()
        self.get_logger().info("planner: " + ", ".join(
            f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in stats.items()))

    def fail_safe(self, clean: bool = False) -> None:
        self.mpc.stop(timeout_s=0.5)
        super().fail_safe(clean)


def main(argv=None) -> int:
    return run_node(NAME, MpcNode, argv)


if __name__ == "__main__":
    sys.exit(main())
