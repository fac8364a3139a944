"""Building the model of a :class:`robot_rl.envs.legged_task.LocomotionSpec` task, and small numeric helpers.

``robot_rl.envs.locomotion``'s ``LocomotionVecEnv`` calls these once at construction (and again on a reseed): the
foot and torque sensors added to the robot's MJCF, the domain-randomized model variants, the standing height. They
depend only on their arguments, so they read apart from the env's per-step code.
"""

from __future__ import annotations

import copy
import os

import mujoco
import numpy as np

from robot_rl.envs.legged_task import LocomotionRandomization, LocomotionSpec


def add_sensors(spec, task: LocomotionSpec, profile) -> None:
    """Edit a robot's MjSpec for ``task``: a touch site per foot, and foot position / velocity / force and joint
    torque sensors (the inputs of the reward terms and the contact state).
    """
    kind, site = mujoco.mjtSensor, mujoco.mjtObj.mjOBJ_SITE
    for foot in task.feet:
        body = spec.body(foot)
        if body is None:
            raise KeyError(f"{task.name}: foot body {foot!r} is not in the robot's MJCF")
        body.add_site(name=f"{foot}_touch", size=[1.3 * task.foot_radius, 0, 0])
    for foot in task.feet:
        spec.add_sensor(name=f"{foot}_pos", type=kind.mjSENS_FRAMEPOS, objtype=site, objname=f"{foot}_touch")
    for foot in task.feet:
        spec.add_sensor(name=f"{foot}_vel", type=kind.mjSENS_FRAMELINVEL, objtype=site, objname=f"{foot}_touch")
    for foot in task.feet:
        spec.add_sensor(name=f"{foot}_force", type=kind.mjSENS_TOUCH, objtype=site, objname=f"{foot}_touch")
    by_joint = {a.target: a.name for a in spec.actuators}
    for j in profile.command_joints:
        spec.add_sensor(name=f"{j}_torque", type=kind.mjSENS_ACTUATORFRC,
                        objtype=mujoco.mjtObj.mjOBJ_ACTUATOR, objname=by_joint[j])


def make_variants(model, profile, task: LocomotionSpec, randomization: LocomotionRandomization | None, rng) -> list:
    """The model variants domain randomization draws (friction, gains, motor strength, payload, CoM offset, joint
    friction), ``randomization.variants`` of them; ``[model]`` without randomization.
    """
    r, m = randomization, model
    if r is None:
        return [m]
    base = m.body(base_body(m, profile)).id
    act = [m.actuator(i).id for i in range(m.nu)]
    fl = m.dof_frictionloss.copy()
    if not task.joint_friction and r.joint_friction[1] > 0:  # the reality samples restore it
        fl = profile.load_model(visual=False, joint_friction=True).dof_frictionloss.copy()
    out = []
    for _ in range(r.variants):
        v = copy.copy(m)  # a deep copy (mj_copyModel)
        mu = rng.uniform(*r.friction)
        v.geom_friction[:, 0] = mu
        kp = rng.uniform(*r.kp_scale) * m.actuator_gainprm[act, 0]
        kd = rng.uniform(*r.kd_scale) * -m.actuator_biasprm[act, 2]
        v.actuator_gainprm[act, 0] = kp
        v.actuator_biasprm[act, 1] = -kp
        v.actuator_biasprm[act, 2] = -kd
        v.actuator_forcerange[act] = m.actuator_forcerange[act] * rng.uniform(*r.motor_strength)
        v.body_mass[base] = m.body_mass[base] + rng.uniform(*r.payload)
        v.body_ipos[base] = m.body_ipos[base] + rng.uniform(-r.com_offset, r.com_offset, 3)
        v.dof_frictionloss[:] = fl * rng.uniform(*r.joint_friction)
        out.append(v)
    return out


def base_body(model, profile) -> str:
    """Name of the body that carries the IMU site (the floating base)."""
    return model.body(int(model.site(profile.imu_site).bodyid[0])).name


def nominal_height(model, data, jq: np.ndarray, stand: np.ndarray, task: LocomotionSpec) -> float:
    """Base height [m] of the standing pose with the lowest foot touching the ground (``data`` is scratch)."""
    m, d = model, data
    mujoco.mj_resetData(m, d)
    d.qpos[jq] = stand
    d.qpos[2] = 1.0
    mujoco.mj_kinematics(m, d)
    feet_z = min(d.xpos[m.body(f).id][2] for f in task.feet)
    return 1.0 - feet_z + task.foot_radius + 0.002


def rotation_matrices(quat: np.ndarray) -> np.ndarray:
    """(N, 4) w, x, y, z -> (N, 3, 3) rotation matrices (body -> world)."""
    q = quat / np.linalg.norm(quat, axis=1, keepdims=True)
    w, x, y, z = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], axis=1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], axis=1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], axis=1)], axis=1)


def cpus() -> int:
    """CPUs this process may use (the default size of MuJoCo's rollout thread pool)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)
