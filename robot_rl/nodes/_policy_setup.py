"""policy_node's start-up: the policy artifact, robot profile, observation builder and action map it runs with.

Each refusal is a ``StartupError`` that names the parameter at fault (the node exits 2 with it); none of this runs
in the control loop.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from robot_rl.nodes._common import StartupError


def load_policy(model_dir: str, profile, obs_names):
    """``OnnxPolicy`` for ``profile`` and the env's observation layout ``obs_names`` (the runtime checks the
    artifact: sidecar vs profile, sha256, graph signature, probe run; its refusal names expected vs got).
    """
    from robot_rl.export.runtime import OnnxPolicy

    if not model_dir:
        raise StartupError("parameter 'model': a policy artifact directory (policy.onnx + policy.json) is required")
    model_dir = _resolve_dir(model_dir, "model")
    try:
        return OnnxPolicy(model_dir, profile, obs_names=obs_names)
    except Exception as exc:  # noqa: BLE001 - every refusal of the runtime is a refused start
        raise StartupError(f"parameter 'model': refusing policy artifact {model_dir}: {exc}") from None


def _resolve_dir(path: str, parameter: str) -> str:
    """``path`` as given, or found in the package share (``models/<name>`` of an install); refusals name the
    parameter.
    """
    if Path(path).is_dir():
        return path
    from robot_rl.core.assets import find_asset

    try:
        path = str(find_asset(path))
    except FileNotFoundError:
        raise StartupError(f"parameter {parameter!r}: {path} does not exist (here or in the package share)") from None
    if not Path(path).is_dir():
        raise StartupError(f"parameter {parameter!r}: {path} is not a directory")
    return path


def load_monitor(monitor_dir: str, profile, policy):
    """The policy's ``DynamicsMonitor`` (``robot-rl monitor``), or None when ``monitor_dir`` is empty. Refused when
    it was trained for another policy (its data is that policy's closed loop).
    """
    if not monitor_dir:
        return None
    from robot_rl.export.monitor import DynamicsMonitor

    monitor_dir = _resolve_dir(monitor_dir, "monitor")
    try:
        mon = DynamicsMonitor(monitor_dir, profile)
    except Exception as exc:  # noqa: BLE001 - every refusal of the runtime is a refused start
        raise StartupError(f"parameter 'monitor': refusing dynamics monitor {monitor_dir}: {exc}") from None
    trained_for = str((mon.config.get("policy") or {}).get("sha256", ""))
    running = str(policy.sidecar["model"]["sha256"])
    if trained_for != running:
        raise StartupError(f"parameter 'monitor': {monitor_dir} was trained for policy {trained_for[:12]}, the model "
                           f"is {running[:12]}; retrain it with robot-rl monitor <model>")
    return mon


def load_robot_profile(robot: str):
    """The robot profile named by parameter ``robot`` (a refusal names the parameter)."""
    from robot_rl.core.config import ConfigError
    from robot_rl.core.profile import load_profile

    try:
        return load_profile(robot)
    except (ConfigError, FileNotFoundError) as exc:
        raise StartupError(f"parameter 'robot': cannot load robot profile {robot!r}: {exc}") from None


def observation_builder(env_id: str, profile):
    """The env's ``ObservationBuilder`` (the same code that built the training observations); for dict-observation
    tasks wrapped so the input is ``concat(observation, desired_goal)`` like in training.
    """
    try:
        from robot_rl.envs import make

        base = make(env_id).unwrapped
    except Exception as exc:  # noqa: BLE001
        raise StartupError(f"parameter 'env_id': cannot build env {env_id!r}: {exc}") from None
    if getattr(base, "profile", None) is None or base.profile.name != profile.name:
        raise StartupError(f"parameter 'env_id': env {env_id!r} is for robot "
                           f"{getattr(getattr(base, 'profile', None), 'name', None)!r}, not {profile.name!r}")
    space = base.observation_space
    if hasattr(space, "spaces") and "desired_goal" in space.spaces:  # goal-conditioned dict observation
        from robot_rl.deploy.policy_loop import GoalInputBuilder

        return GoalInputBuilder(base.observation_builder, space.spaces["desired_goal"].shape[0])
    return base.observation_builder


def legged_task(env_id: str):
    """The ``LocomotionSpec`` of ``env_id`` when it is a legged velocity-tracking task, else None (nothing is
    built: the declaration only).
    """
    from robot_rl.envs import env_class, task_spec

    try:
        legged = hasattr(env_class(env_id), "episode_sample")
    except KeyError as exc:
        raise StartupError(f"parameter 'env_id': {exc}") from None
    return task_spec(env_id) if legged else None


def action_map(policy, model: str):
    """``(center, half_range)`` of a position policy's output, from the sidecar's ``action`` section."""
    act = policy.sidecar.get("action", {})
    try:
        center = np.asarray(act["center"], dtype=np.float64)
        half = np.asarray(act["half_range"], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise StartupError(f"parameter 'model': {model}/policy.json has no usable action.center / "
                           f"action.half_range ({exc}); a legged task needs them to feed back the last action") \
            from None
    if center.shape != (policy.n_act,) or half.shape != (policy.n_act,) or not np.all(half > 0):
        raise StartupError(f"parameter 'model': {model}/policy.json action.center / half_range: expected "
                           f"{policy.n_act} values each (half_range > 0), got {center.tolist()} / {half.tolist()}")
    return center, half
