"""Logged runs for system identification: a rosbag2 bag or recorded episodes -> ``JointLog`` at the control period.

Bags go through ``robot_rl.data.bags.import_bag`` (the same resampling and damage handling as ``robot-rl replay``:
joint states interpolated onto the control grid, commands held, episodes split at gaps), so sysid sees exactly the
transitions the dataset tools see. Commands become actuator controls through the env's linear action map.
"""

from __future__ import annotations

from pathlib import Path

import mujoco
import numpy as np

from robot_rl.sysid.fit import JointLog

_ONE_DOF = (int(mujoco.mjtJoint.mjJNT_SLIDE), int(mujoco.mjtJoint.mjJNT_HINGE))


def check_env(env) -> tuple:
    """``(model, frame_skip, qpos addresses, qvel addresses)`` of an env sysid can re-simulate from joint states:
    every degree of freedom is a measured slide/hinge joint and actions map linearly onto the actuator controls.
    Raises ``ValueError`` saying what is missing.
    """
    u = env.unwrapped
    model = u.model
    if not hasattr(u, "profile") or not hasattr(u, "joint_qpos_addresses"):
        raise ValueError(f"{type(u).__name__}: sysid needs a fixed-base robot_rl task env (a hardware profile and "
                         "the joint-state API); legged and dm_control envs are not supported yet")
    names = list(u.profile.joint_names)
    bad = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, j) or f"joint{j}" for j in range(model.njnt)
           if int(model.jnt_type[j]) not in _ONE_DOF]
    if bad or model.nv != len(names):
        raise ValueError(f"{u.profile.name}: sysid re-simulates from measured joint states, so every dof must be a "
                         f"measured slide/hinge joint (model: {model.nv} dofs, free/ball joints {bad}; "
                         f"measured: {names})")
    if hasattr(u, "action_map"):
        raise ValueError(f"{u.profile.name}: position-target envs (action_map) are not supported by sysid yet; "
                         "use an effort-controlled robot")
    return model, int(u.frame_skip), u.joint_qpos_addresses, u.joint_qvel_addresses


def actions_to_ctrl(model, actions: np.ndarray) -> np.ndarray:
    """Normalized actions ``(T, nu)`` -> actuator controls, the env's map ``mid + half * a`` (a clipped to [-1, 1])."""
    lo, hi = model.actuator_ctrlrange[:, 0], model.actuator_ctrlrange[:, 1]
    a = np.clip(np.asarray(actions, dtype=np.float64), -1.0, 1.0)
    return (hi + lo) / 2.0 + (hi - lo) / 2.0 * a


def log_from_episodes(episodes, env) -> JointLog:
    """Episodes with ``infos["joint_positions"/"joint_velocities"]`` (``record_episode``, ``import_bag``) -> log."""
    model = env.unwrapped.model
    segments = []
    for i, ep in enumerate(episodes):
        if "joint_positions" not in ep.infos or "joint_velocities" not in ep.infos:
            raise ValueError(f"episode {i}: infos lack joint_positions/joint_velocities")
        q = np.asarray(ep.infos["joint_positions"], dtype=np.float64)
        qd = np.asarray(ep.infos["joint_velocities"], dtype=np.float64)
        segments.append((q, qd, actions_to_ctrl(model, ep.actions)))
    return JointLog(segments, list(env.unwrapped.profile.joint_names))


def load_bag(path: str | Path, env) -> tuple[JointLog, list[str]]:
    """A rosbag2 bag (directory or ``.mcap``) -> ``(log, load notes)``; ``ValueError`` when nothing usable is in it."""
    from robot_rl.data.bags import ImportSettings, import_bag

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no bag at {path}")
    u = env.unwrapped
    episodes, report = import_bag(path, env, ImportSettings(control_period_s=u.control_dt, split="gap"))
    notes = [*report.notes, *(f"{e.name}: {'; '.join(e.issues)}" for e in report.episodes if not e.ok)]
    if not episodes:
        profile = u.profile
        raise ValueError(f"{path}: no usable segment of {profile.topics.joint_states} with joints "
                         f"{list(profile.joint_names)} and {profile.topics.commands} commands"
                         + (f" ({'; '.join(notes)})" if notes else ""))
    return log_from_episodes(episodes, env), notes
