"""mpc_node: receding-horizon MPC on a robot (``robot_rl.control.factory.build_mpc``) through the safety filter.

The controller is the one ``build_mpc`` makes from an ``MpcConfig``: parameter ``config`` names the MPC YAML
(default ``config/mpc_cartpole.yaml``) and every field of ``MpcConfig`` is a parameter of the same dotted name
(``planner``, ``cost``, ``mpc.horizon``, ``ilqr.max_iterations``, ``sampling.num_samples``, ...) whose default is
the file's value; setting one overrides the file. Names, descriptions and checks come from the dataclasses
(``ParamReader.config``), so the node and the factory cannot disagree; docs/configuration.md lists them.

On the first measured state the factory's warm start (``warmup_iterations`` of iLQR) runs in its own thread and
then the planner thread starts; it replans from the newest state within ``mpc.replan_budget_s`` while the control
loop runs every ``mpc.control_period_s`` of steady time (the robot profile's period) and applies
``u = U[i] + K[i] (x - X[i])`` from the latest plan. Until the first plan it sends nothing (``wait_for_plan``, the
default: the robot keeps its start-up state; sim_robot with ``hold_until_first_command`` stays paused) or the
fallback (zero effort, or hold position). Everything else
(topics, safety filter, e-stop latch and services, diagnostics, timing, exit codes) is the policy node's. A
planner-thread exception stops the node: final safe command, exit 1 (``allow_fault_injection`` +
``~/inject_fault`` makes the next replan raise). Planner statistics (solve time p50/p99/max, deadline misses,
fallbacks) are logged at exit.

Goals (a config with ``goal_term`` and ``env_id``, e.g. config/mpc_panda.yaml): exactly the policy node's goal
handling (``PolicyNode._goal_gate``, ``robot_rl.deploy.goal_input.GoalGate``): goals on the profile's goal topic
(``topics.goal_type``; the Panda: geometry_msgs/PoseStamped, ``header.frame_id`` must be ``base_frame``), refused
with a warning that says why when in another frame, non-finite or outside ``env_id``'s ``goal_box``; ``~/goal`` is
the goal in use; without one (parameter ``goal`` empty) the robot holds where it was, and the planner starts with
the first accepted goal. An accepted goal becomes the target of the cost term ``goal_term``
(``MpcRuntime.set_goal``) from the next replan on.

Run: ``python -m robot_rl.nodes.mpc_node --ros-args -p config:=config/mpc_cartpole.yaml -p mpc.horizon:=50``
"""

from __future__ import annotations

import sys
import threading
import time
from types import SimpleNamespace

import numpy as np

from robot_rl.nodes._common import ParamReader, StartupError, run_node
from robot_rl.nodes._policy_setup import load_robot_profile
from robot_rl.nodes.policy_node import PolicyNode

NAME = "mpc_node"
DEFAULT_CONFIG = "config/mpc_cartpole.yaml"
# Overridden by ``planner`` in build_mpc: a parameter for it would be a second name for the same choice.
EXCLUDED = ("sampling.method",)


class MpcNode(PolicyNode):
    NAME = NAME

    @classmethod
    def robot_parameters(cls, p: ParamReader) -> dict:
        """Parameters ``config`` and one per ``MpcConfig`` field, whose defaults are the file's values (so the
        file is read here; ``--help`` shows the defaults of ``DEFAULT_CONFIG``).
        """
        from robot_rl.control.factory import MpcConfig
        from robot_rl.core.assets import find_asset
        from robot_rl.core.config import ConfigError, load_config

        config_name = p.str("config", DEFAULT_CONFIG, "MPC config YAML (robot_rl.control.factory.MpcConfig, "
                            "docs/configuration.md): the defaults of every other planner parameter, which "
                            "override the file's values when set")
        try:
            file_config = load_config(MpcConfig, find_asset(config_name))
        except (ConfigError, FileNotFoundError) as exc:
            raise StartupError(f"parameter 'config': {exc}") from None
        return {"config": config_name, "file_config": file_config,
                "mpc_config": p.config(file_config, exclude=EXCLUDED)}

    @classmethod
    def controller_parameters(cls, p: ParamReader) -> dict:
        """``wait_for_plan`` besides the ``MpcConfig`` fields."""
        return {"wait_for_plan": p.bool("wait_for_plan", True, "send no command before the first plan while none "
                                        "was sent yet (the warm start: ~0.1-0.7 s), so the robot keeps its start-up "
                                        "state (sim_robot with hold_until_first_command stays paused; an effort "
                                        "robot gets no force either way); false: send the fallback command (zero "
                                        "effort, or hold position) from the first state on. Safe commands always go "
                                        "out")}

    def robot_and_period(self, a: SimpleNamespace):
        """The robot and period are the config's (checked against the robot profile)."""
        self.config_name, file_config = a.config, a.file_config
        self.config = config = a.mpc_config
        flat, in_file = _flat(config), _flat(file_config)
        self.overrides = {k: v for k, v in flat.items() if v != in_file[k]}
        profile = load_robot_profile(config.robot)
        if abs(config.mpc.control_period_s - profile.control_period_s) > 1e-9:
            raise StartupError(f"parameter 'mpc.control_period_s': {config.mpc.control_period_s} s differs from the "
                               f"control period {profile.control_period_s} s of robot profile {profile.name!r} "
                               f"(the planner steps the profile's period)")
        return profile, config.mpc.control_period_s

    def make_controller(self, a: SimpleNamespace, profile):
        from robot_rl.control.factory import build_mpc
        from robot_rl.deploy.state_builder import StateBuilder

        cfg = self.config
        try:
            rt = build_mpc(cfg)
        except FileNotFoundError as exc:
            raise StartupError(f"parameter 'cost': {exc}") from None
        except ValueError as exc:  # the message names the config keys, which are the parameter names
            raise StartupError(f"MPC config {self.config_name} (parameter overrides: {_text(self.overrides)}): {exc}"
                               ) from None
        if cfg.goal_term:
            self.env_id = _goal_task(cfg.env_id, profile, rt.goal_dim)
        try:
            builder = StateBuilder(rt.dynamics.model, profile.joint_names, goal_dim=rt.goal_dim)
        except (ValueError, KeyError) as exc:
            raise StartupError(f"parameter 'robot': {exc}") from None
        nx = builder.nx
        self.runtime, ctl = rt, rt.controller
        self._waiting_for_plan = a.wait_for_plan
        self._planner_fault = False
        self._warm_thread: threading.Thread | None = None
        self._warm_error: str | None = None
        self._start_lock = threading.Lock()
        self._stopped = False
        self._goal_in_use = np.full(rt.goal_dim, np.nan)
        optimize = ctl.planner.optimize

        def optimize_checked(*args, **kwargs):
            if self._planner_fault:  # allow_fault_injection: an exception inside the planner thread
                raise RuntimeError("injected fault (allow_fault_injection): exception in the planner thread")
            return optimize(*args, **kwargs)

        ctl.planner.optimize = optimize_checked

        def act(obs):
            now = time.monotonic()
            x = obs[:nx]
            if rt.goal_term and not np.array_equal(obs[nx:], self._goal_in_use):  # a new accepted goal
                rt.set_goal(obs[nx:])
                self._goal_in_use = obs[nx:].copy()
            if self._warm_thread is None:
                self._warm_thread = threading.Thread(target=self._warm_start_then_plan, args=(x, now),
                                                     name="mpc-warm-start", daemon=True)
                self._warm_thread.start()
            ctl.set_state(x, now)
            return rt.command_from_control(ctl.action(x, now))

        sm = cfg.sampling
        search = (f"{cfg.jacobian} Jacobians" if cfg.planner == "ilqr" else
                  f"{sm.num_samples} samples x {sm.iterations} iterations, noise at {sm.knots or 'every step'}"
                  f"{' knots' if sm.knots else ''}")
        return builder, act, (f"{cfg.planner} MPC from {self.config_name} (parameter overrides: "
                              f"{_text(self.overrides)}; horizon {cfg.mpc.horizon}, budget {cfg.mpc.replan_budget_s} "
                              f"s, {'coarse' if cfg.coarse_model else 'exact'} planning model, {search}, cost "
                              f"{cfg.cost})")

    def withhold(self, status) -> bool:
        """Until the first plan, while no command was sent yet (``wait_for_plan``): publish nothing while the safety
        filter waits for the first joint states or the warm start runs. A fault or e-stop's safe command goes out,
        and a goal config holding without a goal sends its hold commands (its warm start waits for the goal).
        """
        if self._waiting_for_plan:
            warming = status.mode == "normal" and self._warm_thread is not None and self.runtime.controller.plan is None
            if status.mode == "waiting" or warming:
                return True
            self._waiting_for_plan = False
        return False

    def _warm_start_then_plan(self, x: np.ndarray, t_s: float) -> None:
        """Factory warm start from the first state (a long iLQR solve; the control loop meanwhile sends nothing, or
        the fallback command without ``wait_for_plan``), shifted by the periods it took and installed as the first
        plan's initial guess; then the planner thread.
        """
        rt = self.runtime
        try:
            if self.config.warmup_iterations:
                sol = rt.warm_start(x, np.random.default_rng(self.config.seed))
                late = min(int((time.monotonic() - t_s) / self.period_s), len(sol.U) - 1)

                def shifted(a):  # the plan from `late` periods on, its last entry repeated
                    return np.concatenate([a[late:], np.repeat(a[-1:], late, axis=0)])

                # with its states and gains: the first replan rolls it out in closed loop (open loop, a plan that
                # holds an unstable system falls over the horizon and iLQR drifts to a plan that lets it fall)
                rt.controller.set_initial_guess(shifted(sol.U), shifted(sol.X), shifted(sol.K))
        except Exception as exc:  # noqa: BLE001 - reported by check_health: the node stops with the safe command
            self._warm_error = f"{type(exc).__name__}: {exc}"
            return
        with self._start_lock:
            if not self._stopped:
                rt.controller.start()

    def _stop_planner(self, timeout_s: float) -> None:
        with self._start_lock:
            self._stopped = True
        self.runtime.controller.stop(timeout_s=timeout_s)
        if self._warm_thread is not None:
            self._warm_thread.join(timeout_s)

    def _on_inject(self, _req, resp):
        self._planner_fault = True
        resp.success, resp.message = True, "the next replan raises in the planner thread"
        return resp

    def check_health(self) -> str | None:
        if self._warm_error:
            return f"planner warm start failed: {self._warm_error}"
        err = self.runtime.controller.last_error
        return f"planner thread failed: {err}" if err else None

    def on_shutdown(self) -> None:
        self._stop_planner(2.0)
        super().on_shutdown()
        stats = self.runtime.controller.stats()
        self.get_logger().info("planner: " + ", ".join(
            f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in stats.items()))

    def fail_safe(self, clean: bool = False) -> None:
        self._stop_planner(0.5)
        super().fail_safe(clean)


def _goal_task(env_id: str, profile, goal_dim: int) -> str:
    """``env_id`` of a goal config: a registered task of this robot that declares a ``goal_box`` of goals as long
    as the goal term's target.
    """
    from robot_rl.envs import task_spec

    try:
        spec = task_spec(env_id)
    except Exception as exc:  # noqa: BLE001 - any failure to find the task is a refused start naming the parameter
        raise StartupError(f"parameter 'env_id': cannot load task {env_id!r}: {exc}") from None
    if spec.robot != profile.name:
        raise StartupError(f"parameter 'env_id': task {env_id!r} is for robot {spec.robot!r}, not {profile.name!r}")
    if spec.goal_box is None:
        raise StartupError(f"parameter 'env_id': task {env_id!r} declares no goal_box, so goals could not be "
                           "checked against a workspace")
    if spec.goal_dim != goal_dim:
        raise StartupError(f"parameter 'env_id': task {env_id!r} has {spec.goal_dim}-value goals, the cost's goal "
                           f"term takes {goal_dim}")
    return env_id


def _flat(config) -> dict:
    """``{parameter name: value}`` of an ``MpcConfig``."""
    from robot_rl.core.config import parameter_specs

    return {s.name: s.default for s in parameter_specs(config, exclude=EXCLUDED)}


def _text(overrides: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in overrides.items()) or "none"


def main(argv=None) -> int:
    return run_node(NAME, MpcNode, argv, parameters=MpcNode.node_parameters)


if __name__ == "__main__":
    sys.exit(main())
