"""Torque-limited pendulum swing-up (sim/pendulum/pendulum.xml, hardware/pendulum.yaml), twin of Pendulum-v1.

Observation (float32): ``[cos(angle), sin(angle), angular_velocity rad/s]``, angle 0 = upright.
Action: torque, [-1, 1] -> [-2, 2] N m. Control period 0.05 s, 200 steps (10 s), start angle U(-pi, pi),
velocity U(-1, 1) rad/s. Reward as Gymnasium's Pendulum-v1: ``-(angle^2 + 0.1 omega^2 + 0.001 torque^2)`` with the
angle wrapped to [-pi, pi] and torque in N m, so returns compare directly (about -150 is solved; a swing-up policy
gets -120 to -200 depending on the start). No termination; ``is_success``: within 0.1 rad of upright.
"""

from __future__ import annotations

import math

import numpy as np

from robot_rl.envs.base import MujocoTaskEnv
from robot_rl.envs.obs import ObservationBuilder
from robot_rl.envs.rewards import abs_wrapped_angle

OBS_TERMS = (
    ("pole_angle_cos", "cos", "hinge"),
    ("pole_angle_sin", "sin", "hinge"),
    ("pole_angular_velocity", "vel", "hinge"),
)
OBS_UNITS = ("1", "1", "rad/s")


class PendulumEnv(MujocoTaskEnv):
    """Pendulum swing-up (see module docstring)."""

    def __init__(self, *, max_episode_steps: int = 200, **kw):
        super().__init__("pendulum", frame_skip=5, max_episode_steps=max_episode_steps, **kw)

    def _setup(self):
        self._th, self._thd = self._qadr[0], self._dadr[0]

    def _make_observation_builder(self) -> ObservationBuilder:
        return ObservationBuilder(self.profile.joint_names, OBS_TERMS, units=OBS_UNITS)

    def _initial_state(self, rng):
        self.data.qpos[self._th] = rng.uniform(-math.pi, math.pi)
        self.data.qvel[self._thd] = rng.uniform(-1.0, 1.0)
        return None

    def _success_at_reset(self):
        th = float(self.data.qpos[self._th])
        return abs(math.atan2(math.sin(th), math.cos(th))) < 0.1

    def _evaluate(self, action):
        reward, angle = pendulum_reward(self.data.qpos[self._th], self.data.qvel[self._thd],
                                        self._ctrl_mid[0], self._ctrl_half[0], float(action[0]))
        return float(reward), False, bool(abs(angle) < 0.1)

    @staticmethod
    def _reward_kernel_factory(njit):
        reward = njit(pendulum_reward)

        def evaluate(qpos, qvel, action, p):  # pragma: no cover - runs compiled (robot_rl.envs.fast_step)
            r, angle = reward(qpos[int(p[0])], qvel[int(p[1])], p[2], p[3], action[0])
            return r, False, 1 if abs(angle) < 0.1 else 0

        return njit(evaluate)

    def _reward_kernel_params(self):
        return [self._th, self._thd, self._ctrl_mid[0], self._ctrl_half[0]]

    def _evaluate_batch(self, qpos, qvel, action):
        # pendulum_reward over the batch with numpy, the same operations in the same order: rows equal the scalar
        # rewards up to numpy's SIMD arctan2 (a few ulp); success is exact (abs_wrapped_angle).
        angle = abs_wrapped_angle(qpos[:, self._th], 0.1)  # |angle|: angle * angle is the same
        omega = qvel[:, self._thd]
        torque = np.fmin(np.fmax(action[:, 0], -1.0), 1.0)  # NaN -> -1.0 as min(1, max(-1, nan))
        torque *= self._ctrl_half[0]
        torque += self._ctrl_mid[0]
        reward = angle * angle
        v = 0.1 * omega
        v *= omega
        reward += v
        torque *= 0.001 * torque
        reward += torque
        np.negative(reward, out=reward)
        return reward, np.zeros(len(qpos), dtype=bool), angle < 0.1


def pendulum_reward(th: float, omega: float, mid: float, half: float, a: float) -> tuple[float, float]:
    """Pendulum-v1 reward of hinge angle ``th`` [rad] (0 up), velocity ``omega`` [rad/s] and normalized action
    ``a`` (clipped as MuJoCo clamps the ctrl; torque = ``mid + half * a`` N m); returns (reward, angle wrapped to
    [-pi, pi]).
    """
    angle = math.atan2(math.sin(th), math.cos(th))
    torque = mid + half * min(1.0, max(-1.0, a))
    return -(angle * angle + 0.1 * omega * omega + 0.001 * torque * torque), angle
