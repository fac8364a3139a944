"""Cart-pole on a rail (sim/cartpole/cartpole.xml, hardware/cartpole.yaml).

Observation (float32): ``[cart_position m, cos(pole_angle), sin(pole_angle), cart_velocity m/s,
pole_angular_velocity rad/s]``, pole angle 0 = upright. Action: cart force, [-1, 1] -> [-10, 10] N.
Control period 0.02 s (timestep 0.01 s x frame_skip 2), 500 steps (10 s).

Reward (dm_control suite ``cartpole._get_reward``, smooth): ``upright * centered * small_control * small_velocity``
with ``upright = (cos + 1) / 2``, ``centered = (1 + tol(x, margin 2)) / 2``,
``small_control = (4 + tol(u, margin 1, quadratic)) / 5``, ``small_velocity = (1 + tol(omega, margin 5)) / 2``.
Each factor is in [0, 1], so the return is at most 500.

``CartpoleSwingup-v0`` starts hanging down (angle pi + 0.01 N(0,1)); ``CartpoleBalance-v0`` starts near upright
(angle U(-0.034, 0.034), cart U(-0.1, 0.1)) like dm_control, and -- unlike dm_control -- terminates when the pole
falls past ``fall_angle`` (0.8 rad), which makes on-policy learning faster; pass ``fall_angle=None`` to run the
full 500 steps like the suite.
"""

from __future__ import annotations

import math

import numpy as np

from robot_rl.envs.base import MujocoTaskEnv
from robot_rl.envs.obs import ObservationBuilder
from robot_rl.envs.rewards import _GAUSS_SCALE_01, abs_wrapped_angle

OBS_TERMS = (
    ("cart_position", "pos", "slider"),
    ("pole_angle_cos", "cos", "hinge"),
    ("pole_angle_sin", "sin", "hinge"),
    ("cart_velocity", "vel", "slider"),
    ("pole_angular_velocity", "vel", "hinge"),
)
OBS_UNITS = ("m", "1", "1", "m/s", "rad/s")
# -0.5 (scale / margin)^2 of the gaussian tolerances of the cart position (margin 2 m) and pole velocity (5 rad/s).
_GAUSS_EXPONENT = -0.5 * (_GAUSS_SCALE_01 / np.array([[2.0], [5.0]])) ** 2


class CartpoleEnv(MujocoTaskEnv):
    """Cart-pole swing-up or balance (see module docstring).

    Args:
        swingup: start hanging (True) or near upright (False).
        fall_angle: Balance only: terminate when |angle| exceeds this [rad]; None never terminates.
        **kw: ``MujocoTaskEnv`` arguments (randomization, seed, render_mode, max_episode_steps).

    """

    def __init__(self, swingup: bool = True, *, fall_angle: float | None = 0.8, max_episode_steps: int = 500, **kw):
        self.swingup = bool(swingup)
        self.fall_angle = None if swingup else fall_angle
        super().__init__("cartpole", frame_skip=2, max_episode_steps=max_episode_steps, **kw)

    def _setup(self):
        self._x, self._th = self._qadr[0], self._qadr[1]
        self._xd, self._thd = self._dadr[0], self._dadr[1]

    def _make_observation_builder(self) -> ObservationBuilder:
        return ObservationBuilder(self.profile.joint_names, OBS_TERMS, units=OBS_UNITS)

    def _initial_state(self, rng):
        d = self.data
        if self.swingup:
            d.qpos[self._qadr] = [0.01 * rng.standard_normal(), math.pi + 0.01 * rng.standard_normal()]
        else:
            d.qpos[self._qadr] = [rng.uniform(-0.1, 0.1), rng.uniform(-0.034, 0.034)]
        d.qvel[self._dadr] = 0.01 * rng.standard_normal(2)
        return None

    def _evaluate(self, action):
        qpos = self._qpos
        angle = qpos.item(self._th)
        reward = cartpole_reward(qpos.item(self._x), angle, self._qvel.item(self._thd), action.item(0))
        terminated = False
        if self.fall_angle is not None:
            terminated = abs(math.atan2(math.sin(angle), math.cos(angle))) > self.fall_angle
        return reward, terminated, None

    @staticmethod
    def _reward_kernel_factory(njit):
        reward = njit(cartpole_reward)

        def evaluate(qpos, qvel, action, p):  # pragma: no cover - runs compiled (robot_rl.envs.fast_step)
            angle = qpos[int(p[1])]
            r = reward(qpos[int(p[0])], angle, qvel[int(p[2])], action[0])
            terminated = False
            if p[3] == p[3]:  # fall_angle (NaN: None)
                terminated = abs(math.atan2(math.sin(angle), math.cos(angle))) > p[3]
            return r, terminated, -1

        return njit(evaluate)

    def _reward_kernel_params(self):
        return [self._x, self._th, self._thd, math.nan if self.fall_angle is None else self.fall_angle]

    def _evaluate_batch(self, qpos, qvel, action):
        # cartpole_reward over the batch with numpy, in fewer operations: -0.5 (x / margin * scale)^2 as
        # x^2 * (-0.5 (scale / margin)^2), 4 + (1 - u^2) as 5 - u^2 (0 at |u| == 1 either way) and the three
        # "(1 + f) / 2" factors in one (3, N) array. Rows equal the scalar rewards to a few ulp (rounding order and
        # numpy's SIMD cos / exp; the test holds them to rtol 1e-12).
        n = len(qpos)
        f = np.empty((3, n))  # upright, centered, small_velocity
        np.cos(qpos[:, self._th], out=f[0])
        d = f[1:]
        d[0], d[1] = qpos[:, self._x], qvel[:, self._thd]
        d *= d
        d *= _GAUSS_EXPONENT
        np.exp(d, out=d)
        f += 1.0
        u = np.fmin(np.fmax(action[:, 0], -1.0), 1.0)  # fmax / fmin: NaN -> -1.0 as min(1, max(-1, nan))
        u *= u
        np.subtract(5.0, u, out=u)  # (4 + small-control tolerance) before its / 5
        reward = f[0] * f[1]
        reward *= u
        reward *= f[2]
        reward *= 1.0 / 40.0  # the three / 2 and the / 5
        if self.fall_angle is None:
            terminated = np.zeros(n, dtype=bool)
        else:
            terminated = abs_wrapped_angle(qpos[:, self._th], self.fall_angle) > self.fall_angle
        return reward, terminated, None


def cartpole_reward(x: float, angle: float, omega: float, a: float) -> float:
    """dm_control's smooth cart-pole reward in [0, 1] of cart position ``x`` [m], pole angle [rad] (0 up), pole
    angular velocity ``omega`` [rad/s] and normalized action ``a`` (clipped to [-1, 1] here, as MuJoCo clamps it).
    """
    u = min(1.0, max(-1.0, a))
    upright = (math.cos(angle) + 1.0) / 2.0
    # rewards.gaussian_tolerance (margins 2 m, 5 rad/s) and quadratic_tolerance (margin 1) written out: this runs
    # once per env and step.
    dx = x / 2.0 * _GAUSS_SCALE_01
    centered = (1.0 + math.exp(-0.5 * dx * dx)) / 2.0
    small_control = (4.0 + (1.0 - u * u if abs(u) < 1.0 else 0.0)) / 5.0
    dw = omega / 5.0 * _GAUSS_SCALE_01
    small_velocity = (1.0 + math.exp(-0.5 * dw * dw)) / 2.0
    return upright * centered * small_control * small_velocity
