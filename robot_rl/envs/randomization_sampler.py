"""How a ``Randomizer`` (``robot_rl.envs.randomization``) samples and writes the model terms: ``_Sampler``.

One reset samples every model term (masses, inertias, CoM offsets, friction, damping, armature, friction loss,
actuator gains); for arrays of a few elements, per-term numpy calls cost more than the arithmetic, so a ``_Sampler``
resolves the terms once and draws and writes them in one vectorized pass. The table of model terms
(``_MODEL_TERMS``) lives here, beside the code that writes them.
"""

from __future__ import annotations

import mujoco
import numpy as np

# term -> (name object type, model array, columns, lower clip)
_MODEL_TERMS = {
    "body_mass": (mujoco.mjtObj.mjOBJ_BODY, "body_mass", None, 1e-9),
    "body_inertia": (mujoco.mjtObj.mjOBJ_BODY, "body_inertia", None, 1e-12),
    "friction": (mujoco.mjtObj.mjOBJ_GEOM, "geom_friction", 0, 0.0),
    "joint_damping": (mujoco.mjtObj.mjOBJ_JOINT, "dof_damping", None, 0.0),
    "armature": (mujoco.mjtObj.mjOBJ_JOINT, "dof_armature", None, 0.0),
    "frictionloss": (mujoco.mjtObj.mjOBJ_JOINT, "dof_frictionloss", None, 0.0),
    "actuator_gain": (mujoco.mjtObj.mjOBJ_ACTUATOR, "actuator_gainprm", 0, None),
}


def _index(idx: np.ndarray):
    """``idx`` as a slice when it is a contiguous range (basic indexing: cheaper than a fancy index)."""
    if len(idx) and np.array_equal(idx, np.arange(idx[0], idx[0] + len(idx))):
        return slice(int(idx[0]), int(idx[0]) + len(idx))
    return idx


class _Sampler:
    """Samples and applies a list of randomization terms in one pass (a reset samples every term, and for arrays of
    a few elements, per-term numpy calls, fancy indexing and key formatting cost more than the arithmetic).

    Targets, model arrays, nominal values and ``info`` keys are resolved once. ``apply`` draws every term's values
    with one ``rng.random`` call, mapped as ``Generator.uniform`` maps them (``lo + (hi - lo) * u``: the same values
    from the same random stream as one ``uniform`` call per range, in the order scale range then offset range per
    term, ``com_offset`` ``(k, 3)`` offsets in ``[-r, r]``); the new values of the scaled terms are one vector
    operation, written back per model array. ``rz`` is the owning ``Randomizer`` (its targets, nominal arrays and
    per-body factors; not imported here, which would make the two modules import each other).
    """

    def __init__(self, rz, terms: tuple):
        model, self.config = rz.model, rz.config
        self.terms, self.segments = terms, []  # (term, first draw, k, element selection)
        self.keys, self.pos = [], []  # info keys, their values' draw positions
        scaled, n = [], 0  # scaled terms: (term, first draw, k, selection, model array, column)
        nom, clip = [], []
        for term in terms:
            cfg = getattr(rz.config, term)
            idx, names = rz._targets[term]
            k, sel = len(idx), _index(idx)
            self.segments.append((term, n, k, sel))
            if term == "com_offset":
                self.keys += [f"com_offset/{name}/{axis}" for name in names for axis in "xyz"]
                self.pos += range(n, n + 3 * k)
                n += 3 * k
                continue
            for j, name in enumerate(names):  # per element the scale, then the offset (when not constant)
                if cfg.scale != (1.0, 1.0):
                    self.keys.append(f"{term}_scale/{name}")
                    self.pos.append(n + j)
                if cfg.offset != (0.0, 0.0):
                    self.keys.append(f"{term}_offset/{name}")
                    self.pos.append(n + k + j)
            if term != "body_inertia":
                _, array, col, lower = _MODEL_TERMS[term]
                scaled.append((term, n, k, sel, getattr(model, array), col))
                nominal = rz._nominal[array][sel]
                nom.append(nominal if col is None else nominal[:, col])
                clip.append(np.full(k, -np.inf if lower is None else lower))
            n += 2 * k
        self.n = n
        self.writes, self.s_idx, self.o_idx, a = [], [], [], 0
        for _term, start, k, sel, arr, col in scaled:
            self.writes.append((arr, sel if col is None else (sel, col), slice(a, a + k)))
            self.s_idx += range(start, start + k)
            self.o_idx += range(start + k, start + 2 * k)
            a += k
        self.s_idx, self.o_idx = np.asarray(self.s_idx, np.intp), np.asarray(self.o_idx, np.intp)
        self.nom = np.concatenate(nom) if nom else np.zeros(0)
        self.clip = np.concatenate(clip) if clip else np.zeros(0)
        self.nominal = rz._nominal
        self.model = model
        self._scale = None

    def _bounds(self, f: float) -> None:
        """Per-draw ``lo`` and ``hi - lo`` for curriculum scale ``f`` (ranges shrink toward no randomization)."""
        lo, span = np.empty(self.n), np.empty(self.n)
        for term, start, k, _ in self.segments:
            cfg = getattr(self.config, term)
            if term == "com_offset":
                r = cfg.max_offset_m * f
                lo[start:start + 3 * k], span[start:start + 3 * k] = -r, r - -r
                continue
            for first, (a, b), center in ((start, cfg.scale, 1.0), (start + k, cfg.offset, 0.0)):
                low, high = center + f * (a - center), center + f * (b - center)
                lo[first:first + k], span[first:first + k] = low, high - low
        self.lo, self.span, self._scale = lo, span, f

    def apply(self, rz, rng: np.random.Generator, info: dict) -> None:
        if rz.scale != self._scale:
            self._bounds(rz.scale)
        v = self.lo + self.span * rng.random(self.n)
        if self.writes:
            new = np.maximum(self.nom * v[self.s_idx] + v[self.o_idx], self.clip)
            for arr, where, part in self.writes:
                arr[where] = new[part]
        m, nominal = self.model, self.nominal
        for term, start, k, sel in self.segments:  # the terms' other effects, in order
            if term == "body_mass":  # same density change for the inertia (times the inertia term's own factor)
                s = v[start:start + k]
                rz._mass_scale[sel] = s
                inertia = nominal["body_inertia"][sel] * (s * rz._inertia_scale[sel])[:, None] + \
                    rz._inertia_offset[sel, None]
                m.body_inertia[sel] = np.maximum(inertia, _MODEL_TERMS["body_inertia"][3])
            elif term == "body_inertia":  # on top of the mass term's density scaling (kept in _mass_scale)
                s, o = v[start:start + k], v[start + k:start + 2 * k]
                new_i = nominal["body_inertia"][sel] * (rz._mass_scale[sel] * s)[:, None] + o[:, None]
                m.body_inertia[sel] = np.maximum(new_i, _MODEL_TERMS["body_inertia"][3])
                rz._inertia_scale[sel], rz._inertia_offset[sel] = s, o
            elif term == "com_offset":
                m.body_ipos[sel] = nominal["body_ipos"][sel] + v[start:start + 3 * k].reshape(k, 3)
            elif term == "actuator_gain":  # servo bias gains (position/velocity actuators) scale with the motor
                m.actuator_biasprm[sel, 1:3] = nominal["actuator_biasprm"][sel, 1:3] * v[start:start + k, None]
        values = v.tolist()
        info.update(zip(self.keys, [values[i] for i in self.pos]))
