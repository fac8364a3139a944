"""Randomized model copies for randomization-robust planning.

``perturbed_models(model, n, rng, randomization="default")`` returns ``n`` copies of ``model`` with model parameters
(masses, COM, friction, damping, armature, frictionloss, actuator gain) sampled by the env package's own randomizer
(``robot_rl.envs.randomization.Randomizer``, the same profiles the training envs use, ``sim/randomization/*.yaml``),
so the planner scores its samples against the same distribution the policy-learning envs randomize over.
The first copy is the nominal model when ``include_nominal`` is set. The nominal ``model`` is never modified.
"""

from __future__ import annotations

import copy

import mujoco
import numpy as np


def perturbed_models(model: mujoco.MjModel, n: int, rng: np.random.Generator, randomization="default", *,
                     include_nominal: bool = True, scale: float = 1.0) -> list[mujoco.MjModel]:
    """``n`` model copies; ``randomization`` is a profile name, YAML path or ``RandomizationConfig``.

    ``scale`` widens/narrows every range around its nominal value (1 = the profile's ranges).
    """
    from robot_rl.envs.randomization import Randomizer  # envs is numpy + mujoco only (no torch)

    if n < 1:
        raise ValueError(f"perturbed_models: n must be >= 1, got {n}")
    models = []
    for i in range(n):
        m = copy.deepcopy(model)
        if not (include_nominal and i == 0):
            r = Randomizer.from_spec(randomization, m, mujoco.MjData(m))
            if r is None:
                raise ValueError(f"perturbed_models: randomization {randomization!r} resolved to nothing (off)")
            r.scale = scale
            r.on_reset(rng)
        models.append(m)
    return models
