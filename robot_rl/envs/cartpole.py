"""Cart-pole on a rail (sim/cartpole/cartpole.xml, hardware/cartpole.yaml).

Observation (float32): ``[cart_position m, cos(pole_angle), sin(pole_angle), cart_velocity m/s,
pole_angular_velocity rad/s]``, pole angle 0 = upright. Action: cart force, [-1, 1] -> [-10, 10] N.
Control period 0.02 s (timestep 0.01 s x frame_skip 2), 500 steps (10 s).

Reward (dm_control suite ``cartpole._get_reward``, smooth): the product ``upright * centered * small_control *
small_velocity`` with ``upright = (cos + 1) / 2``, ``centered = (1 + tol(x, margin 2)) / 2``,
``small_control = (4 + tol(u, margin 1, quadratic)) / 5``, ``small_velocity = (1 + tol(omega, margin 5)) / 2``.
Each factor is in [0, 1], so the return is at most 500.

``CartpoleSwingup-v0`` starts hanging down (angle pi + 0.01 N(0,1)); ``CartpoleBalance-v0`` starts near upright
(angle U(-0.034, 0.034), cart U(-0.1, 0.1)) like dm_control, and -- unlike dm_control -- terminates when the pole
falls past ``fall_angle`` (0.8 rad), which makes on-policy learning faster; pass ``fall_angle=None`` to run the
full 500 steps like the suite. ``CartpoleSwingupRail-v0`` is the swing-up that also ends when the cart passes
``rail_limit`` (1.7 m; the end stops are at +-1.8 m): the suite lets a swing-up policy use the end stop as a bumper,
which a real rail does not forgive (the safety filter cuts the commands there).
"""

from __future__ import annotations

import math

import numpy as np

from robot_rl.envs.rewards import clip_unit, gaussian, quadratic, wrapped_angle
from robot_rl.envs.task import TaskSpec, Term, action, param, qpos, qvel

OBSERVATION = (
    ("cart_position", "pos", "slider", "m"),
    ("pole_angle_cos", "cos", "hinge", "1"),
    ("pole_angle_sin", "sin", "hinge", "1"),
    ("cart_velocity", "vel", "slider", "m/s"),
    ("pole_angular_velocity", "vel", "hinge", "rad/s"),
)


def upright(angle):
    """(cos + 1) / 2: 1 upright, 0 hanging."""
    return (np.cos(angle) + 1.0) / 2.0


def centered(x):
    """(1 + gaussian tolerance of the cart position, margin 2 m) / 2."""
    return (1.0 + gaussian(x, 2.0)) / 2.0


def small_control(u):
    """(4 + quadratic tolerance of the clipped action, margin 1) / 5."""
    return (4.0 + quadratic(clip_unit(u), 1.0)) / 5.0


def small_velocity(omega):
    """(1 + gaussian tolerance of the pole angular velocity, margin 5 rad/s) / 2."""
    return (1.0 + gaussian(omega, 5.0)) / 2.0


def fallen(angle, fall_angle):
    """The pole is more than ``fall_angle`` [rad] from upright."""
    return np.abs(wrapped_angle(angle)) > fall_angle


def off_rail(x, rail_limit):
    """The cart is more than ``rail_limit`` [m] from the rail's centre."""
    return np.abs(x) > rail_limit


def _initial_state(env, rng):
    q, v = env.joint_qpos_addresses, env.joint_qvel_addresses
    if env.swingup:
        env.data.qpos[q] = [0.01 * rng.standard_normal(), math.pi + 0.01 * rng.standard_normal()]
    else:
        env.data.qpos[q] = [rng.uniform(-0.1, 0.1), rng.uniform(-0.034, 0.034)]
    env.data.qvel[v] = 0.01 * rng.standard_normal(2)
    return None


def task(swingup: bool = True, fall_angle: float | None = 0.8, rail_limit: float | None = None) -> TaskSpec:
    """Swing-up (start hanging) or balance (start near upright; ends when the pole falls past ``fall_angle`` [rad],
    None: never). Either ends when the cart passes ``rail_limit`` [m] (None: never, like dm_control).
    """
    swingup = bool(swingup)
    fall_angle = None if swingup or fall_angle is None else float(fall_angle)
    rail_limit = None if rail_limit is None else float(rail_limit)
    if rail_limit is not None and not 0.0 < rail_limit:
        raise ValueError(f"rail_limit must be > 0 m (or None), got {rail_limit}")
    inputs = {"x": qpos("slider"), "angle": qpos("hinge"), "omega": qvel("hinge"), "u": action(0)}
    terminations = ()
    if fall_angle is not None:
        inputs["fall_angle"] = param(fall_angle)
        terminations += (Term("fallen", fallen),)
    if rail_limit is not None:
        inputs["rail_limit"] = param(rail_limit)
        terminations += (Term("off_rail", off_rail),)
    return TaskSpec(
        name=("CartpoleSwingup" if swingup else "CartpoleBalance") + ("Rail" if rail_limit is not None else ""),
        robot="cartpole", frame_skip=2,
        max_episode_steps=500, observation=OBSERVATION, inputs=inputs, combine="product",
        reward=(Term("upright", upright), Term("centered", centered), Term("small_control", small_control),
                Term("small_velocity", small_velocity)),
        terminations=terminations, initial_state=_initial_state,
        options={"swingup": swingup, "fall_angle": fall_angle, "rail_limit": rail_limit})
