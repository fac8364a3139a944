"""The held-out "reality" of a legged task for ``sim_robot`` (no ROS): one randomization sample, at physics steps.

``LocomotionEnv.episode_sample()`` gives the sample the batched env would run (the same draws, no copy of the
randomization logic): the model variant (floor friction, kp/kd, motor strength, payload, centre of mass, joint
friction), encoder zero offsets, gyro bias and the one-period actuation latency. :class:`LeggedReality` applies what
the env applies per step, at ``sim_robot``'s physics-step granularity: encoder offsets and joint noise on the
measured joints (``sense``), targets tracked in the offset encoder coordinates (``actuate``), gyro bias and noise and
an orientation noise on the IMU (``sense_imu``), and horizontal pushes every ``push_interval_s`` of sim time
(``before_physics_step``).
"""

from __future__ import annotations

import math

import numpy as np


def legged_sample(env_id: str, randomization: str | None, seed: int):
    """``(task spec, episode sample)`` of task ``env_id`` with ``randomization`` (``reality``, ``train``,
    ``nominal`` or None) drawn from ``seed``: the batched env's own draw for its first episode.
    """
    from robot_rl.envs import make

    env = make(env_id, randomization=randomization, seed=seed)
    try:
        base = env.unwrapped
        return base.task, base.episode_sample()
    finally:
        env.close()


class LeggedReality:
    """A legged randomization sample driven by ``SimPlant`` (see module docstring).

    Args:
        sample: ``LocomotionVecEnv.episode_sample()`` (its ``model`` is the one ``data`` belongs to).
        profile: the robot profile (joint and command order).
        data: ``mujoco.MjData`` of ``sample["model"]``.
        rng: generator of the noise and the pushes.
        control_period_s: the task's control period (the latency of a delayed sample).

    """

    def __init__(self, sample: dict, profile, data, rng: np.random.Generator, control_period_s: float):
        self.data = data
        self.rng = rng
        self.r = sample["randomization"]
        calib = np.asarray(sample["calibration"], dtype=np.float64)
        cmd = list(profile.command_joints)
        # encoder offsets: the sample is in command order; measurements come in profile joint order
        self.calibration_cmd = calib
        self.calibration = np.array([calib[cmd.index(j.name)] if j.name in cmd else 0.0 for j in profile.joints])
        self.gyro_bias = np.asarray(sample["gyro_bias"], dtype=np.float64)
        self.action_latency_s = int(sample["latency_steps"]) * float(control_period_s)
        m = sample["model"]
        self.sample = {"variant": sample["variant"], "floor_friction": round(float(m.geom_friction[0, 0]), 4),
                       "latency_steps": int(sample["latency_steps"]),
                       "calibration_max_abs": round(float(np.max(np.abs(calib))), 4),
                       "gyro_bias": [round(float(b), 4) for b in self.gyro_bias]}
        """What was drawn (for the start-up log)."""
        r = self.r
        self._push_at = math.inf
        if r is not None and r.push_velocity > 0:
            self._push_at = float(rng.uniform(0.5, 1.0)) * r.push_interval_s
        self.pushes = 0
        self.reward = 0.0
        """Legged tasks have no per-step reward outside the batched env: stays 0 (``SimPlant`` reads it)."""
        self.episode_return = 0.0

    def before_physics_step(self) -> None:
        """A horizontal base velocity kick of up to ``push_velocity`` every ``push_interval_s`` of sim time."""
        if self.data.time >= self._push_at:
            r = self.r
            self.data.qvel[0:2] += self.rng.uniform(-r.push_velocity, r.push_velocity, 2)
            self._push_at += r.push_interval_s
            self.pushes += 1

    def after_physics_step(self, applied_command: np.ndarray) -> None:
        return None

    def actuate(self, command: np.ndarray) -> np.ndarray:
        """Targets (measured coordinates, command order) -> true joint targets: the robot tracks its encoders."""
        return command - self.calibration_cmd

    def sense(self, q: np.ndarray, qd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """True joint positions / velocities (profile order) -> measured (offsets + noise)."""
        q = q + self.calibration
        r = self.r
        if r is not None:
            q += r.joint_pos_noise * self.rng.standard_normal(q.shape)
            qd = qd + r.joint_vel_noise * self.rng.standard_normal(qd.shape)
        return q, qd

    def sense_imu(self, quat_wxyz: np.ndarray, gyro: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """True base orientation (w, x, y, z) and angular velocity (body frame) -> measured: gyro + bias + noise;
        the orientation turned by a small random rotation about the body x and y axes (std ``gravity_noise`` rad,
        the env's gravity-direction noise).
        """
        r = self.r
        gyro = gyro + self.gyro_bias
        if r is None:
            return quat_wxyz, gyro
        gyro += r.gyro_noise * self.rng.standard_normal(3)
        if r.gravity_noise > 0:
            ax, ay = r.gravity_noise * self.rng.standard_normal(2)
            angle = math.hypot(ax, ay)
            if angle > 0:
                s = math.sin(angle / 2) / angle
                quat_wxyz = _quat_mul(quat_wxyz, np.array([math.cos(angle / 2), ax * s, ay * s, 0.0]))
        return quat_wxyz, gyro


def _quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product of quaternions (w, x, y, z)."""
    w1, x1, y1, z1 = a
    w2, x2, y2, z2 = b
    return np.array([w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2, w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
                     w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2, w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2])


def stand(model, data, profile, height: float, positions=None) -> None:
    """Put the robot upright at base ``height`` [m], heading +x, at rest, joints in the standing pose (or
    ``positions``, command order); ``mj_forward`` after.
    """
    import mujoco

    mujoco.mj_resetData(model, data)
    free = free_joint(model, profile)
    qa = int(model.jnt_qposadr[free])
    data.qpos[qa:qa + 3] = (0.0, 0.0, height)
    data.qpos[qa + 3:qa + 7] = (1.0, 0.0, 0.0, 0.0)
    pose = profile.standing_pose if positions is None else positions
    for name, q in zip(profile.command_joints, pose):
        data.qpos[model.jnt_qposadr[model.joint(name).id]] = q
    mujoco.mj_forward(model, data)


def free_joint(model, profile) -> int:
    """Id of the free joint of the body carrying the profile's IMU site (the floating base)."""
    import mujoco

    if not profile.imu_site:
        raise ValueError(f"robot {profile.name!r} has no imu_site: no floating base to find")
    body = int(model.site(profile.imu_site).bodyid[0])
    while body > 0:
        j0, n = int(model.body_jntadr[body]), int(model.body_jntnum[body])
        for j in range(j0, j0 + n):
            if model.jnt_type[j] == mujoco.mjtJoint.mjJNT_FREE:
                return j
        body = int(model.body_parentid[body])
    raise ValueError(f"robot {profile.name!r}: no free joint above IMU site {profile.imu_site!r}")
