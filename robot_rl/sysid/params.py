"""Which physical parameters system identification fits, their bounds, and how a value is written into a model.

Parameter names are the keys of an env's ``randomization_info`` (``robot_rl.envs.randomization``), so a fit can be
compared with the values a randomized sim sampled, and the re-centred profile uses the same terms:

* ``body_mass_scale/<body>``: mass x s, and the body's inertia x s (same shape, denser material);
* ``joint_damping_offset/<joint>`` (N s/m or N m s/rad added), ``joint_damping_scale/<joint>``;
* ``armature_offset/<joint>``, ``frictionloss_offset/<joint>``;
* ``actuator_gain_scale/<actuator>``: motor strength (and servo bias gains, as the randomizer does);
* ``action_latency_steps``: whole control steps of command delay, an integer grid searched outside the continuous
  fit.

A ``ParamSpec`` is validated against the model (``validate_specs``); every error names the bad parameter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mujoco
import numpy as np

LATENCY = "action_latency_steps"
# kind -> (object type, model array, column or None, "scale" | "offset", default bounds (lo, hi))
# Offset bounds are in the parameter's units; the lower bound is raised to -nominal (values stay >= 0).
KINDS = {
    "body_mass_scale": (mujoco.mjtObj.mjOBJ_BODY, "body_mass", None, "scale", (0.2, 5.0)),
    "joint_damping_scale": (mujoco.mjtObj.mjOBJ_JOINT, "dof_damping", None, "scale", (0.0, 100.0)),
    "joint_damping_offset": (mujoco.mjtObj.mjOBJ_JOINT, "dof_damping", None, "offset", (0.0, 10.0)),
    "armature_offset": (mujoco.mjtObj.mjOBJ_JOINT, "dof_armature", None, "offset", (0.0, 1.0)),
    "frictionloss_offset": (mujoco.mjtObj.mjOBJ_JOINT, "dof_frictionloss", None, "offset", (0.0, 10.0)),
    "actuator_gain_scale": (mujoco.mjtObj.mjOBJ_ACTUATOR, "actuator_gainprm", 0, "scale", (0.2, 5.0)),
}
LATENCY_BOUNDS = (0, 3)
_ONE_DOF = (int(mujoco.mjtJoint.mjJNT_SLIDE), int(mujoco.mjtJoint.mjJNT_HINGE))


@dataclass(frozen=True)
class ParamSpec:
    """One identified parameter: ``name`` (``<kind>/<element>`` or ``action_latency_steps``) and its bounds.

    ``lower``/``upper`` None take the kind's defaults (``KINDS``; latency 0..3 control steps).
    """

    name: str
    lower: float | None = None
    upper: float | None = None

    @property
    def kind(self) -> str:
        return self.name.partition("/")[0]

    @property
    def element(self) -> str:
        return self.name.partition("/")[2]


@dataclass(frozen=True)
class ResolvedParam:
    """A validated continuous parameter: where it lives in the model and its bounds."""

    name: str
    kind: str
    array: str
    index: int
    column: int | None
    mode: str  # "scale" | "offset"
    lower: float
    upper: float

    @property
    def neutral(self) -> float:
        """The value that leaves the model nominal (1 for a scale, 0 for an offset)."""
        return 1.0 if self.mode == "scale" else 0.0


def parse_param(text: str) -> ParamSpec:
    """``"name"`` or ``"name=lo:hi"`` (the CLI form) -> ``ParamSpec``; raises ``ValueError`` naming the text."""
    name, sep, rng = text.partition("=")
    name = name.strip()
    if not sep:
        return ParamSpec(name)
    lo, colon, hi = rng.partition(":")
    try:
        if not colon:
            raise ValueError
        return ParamSpec(name, float(lo), float(hi))
    except ValueError:
        raise ValueError(f"parameter {text!r}: bounds must look like NAME=LOW:HIGH (two numbers)") from None


def _element_index(model, kind: str, objtype, element: str, name: str) -> int:
    count = {mujoco.mjtObj.mjOBJ_BODY: model.nbody, mujoco.mjtObj.mjOBJ_JOINT: model.njnt,
             mujoco.mjtObj.mjOBJ_ACTUATOR: model.nu}[objtype]
    start = 1 if objtype == mujoco.mjtObj.mjOBJ_BODY else 0
    names = [mujoco.mj_id2name(model, objtype, i) or "" for i in range(start, count)]
    what = objtype.name[6:].lower()
    if element not in names:
        raise ValueError(f"parameter {name!r}: no {what} named {element!r} (the model's {what}s: {names})")
    i = names.index(element) + start
    if objtype == mujoco.mjtObj.mjOBJ_BODY and not model.body_mass[i] > 0:
        raise ValueError(f"parameter {name!r}: body {element!r} is massless (nothing to scale)")
    if objtype == mujoco.mjtObj.mjOBJ_JOINT:
        if int(model.jnt_type[i]) not in _ONE_DOF:
            raise ValueError(f"parameter {name!r}: joint {element!r} is not a slide or hinge joint")
        return int(model.jnt_dofadr[i])
    return i


def _bounds(spec: ParamSpec, default: tuple[float, float], floor: float) -> tuple[float, float]:
    lo = default[0] if spec.lower is None else spec.lower
    hi = default[1] if spec.upper is None else spec.upper
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo >= hi:
        raise ValueError(f"parameter {spec.name!r}: bounds [{lo}, {hi}] must be finite with lower < upper")
    if lo < floor - 1e-12:
        raise ValueError(f"parameter {spec.name!r}: lower bound {lo} < {floor:g} would make the value negative")
    return lo, hi


def validate_specs(model, specs: list[ParamSpec]) -> tuple[list[ResolvedParam], tuple[int, int] | None]:
    """Check ``specs`` against ``model``: ``(continuous parameters, latency range or None)``.

    Raises ``ValueError`` naming the parameter: unknown kind or element, bad bounds, duplicates, a scale and an
    offset of the same element (the two cannot be told apart), nothing to fit.
    """
    if not specs:
        raise ValueError("no parameters to identify")
    seen, where, out, latency = set(), {}, [], None
    for spec in specs:
        if spec.name in seen:
            raise ValueError(f"parameter {spec.name!r} given twice")
        seen.add(spec.name)
        if spec.name == LATENCY:
            lo, hi = _bounds(spec, LATENCY_BOUNDS, 0.0)
            if lo != int(lo) or hi != int(hi) or hi > 50:
                raise ValueError(f"parameter {LATENCY!r}: bounds must be whole control steps in 0..50, got {lo}:{hi}")
            latency = (int(lo), int(hi))
            continue
        if spec.kind not in KINDS or not spec.element:
            raise ValueError(f"unknown parameter {spec.name!r}: expected <kind>/<element> with kind one of "
                             f"{sorted(KINDS)}, or {LATENCY!r}")
        objtype, array, col, mode, default = KINDS[spec.kind]
        idx = _element_index(model, spec.kind, objtype, spec.element, spec.name)
        key = (array, idx)
        if key in where:
            raise ValueError(f"parameters {where[key]!r} and {spec.name!r} change the same model value; "
                             "fit one of them")
        where[key] = spec.name
        nominal = float(getattr(model, array)[idx] if col is None else getattr(model, array)[idx, col])
        floor = 0.0 if mode == "scale" else -nominal
        lo, hi = _bounds(spec, (floor, default[1]) if mode == "offset" else default, floor)
        out.append(ResolvedParam(spec.name, spec.kind, array, idx, col, mode, lo, hi))
    if not out:
        raise ValueError(f"only {LATENCY!r} given: add at least one continuous parameter")
    return out, latency


def default_specs(model) -> list[ParamSpec]:
    """A default parameter set for a fixed-base robot: the mass scale of every massive, moving body not moved directly
    by an actuated joint (an overall mass scale and the motor gain cannot be told apart, so the actuated bodies keep
    their nominal mass), the damping offset of every slide/hinge joint, every actuator's gain and the latency.
    """
    actuated = {int(model.jnt_bodyid[model.actuator_trnid[a, 0]]) for a in range(model.nu)
                if int(model.actuator_trntype[a]) == int(mujoco.mjtTrn.mjTRN_JOINT)}
    specs = [ParamSpec(f"body_mass_scale/{mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, b)}")
             for b in range(1, model.nbody) if model.body_mass[b] > 0 and b not in actuated
             and int(model.body_weldid[b]) != 0  # welded to the world: its mass moves nothing
             and mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, b)]
    specs += [ParamSpec(f"joint_damping_offset/{mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, j)}")
              for j in range(model.njnt) if int(model.jnt_type[j]) in _ONE_DOF]
    specs += [ParamSpec(f"actuator_gain_scale/{mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_ACTUATOR, a)}")
              for a in range(model.nu)]
    return [*specs, ParamSpec(LATENCY)]


class ParamWriter:
    """Writes parameter vectors into models, relative to the nominal arrays copied at construction."""

    def __init__(self, model, params: list[ResolvedParam]):
        self.params = params
        self._arrays = sorted({p.array for p in params} | {"body_inertia", "actuator_biasprm"})
        self._nominal = {a: getattr(model, a).copy() for a in self._arrays}
        self._scratch = mujoco.MjData(model)

    def nominal_value(self, p: ResolvedParam) -> float:
        arr = self._nominal[p.array]
        return float(arr[p.index] if p.column is None else arr[p.index, p.column])

    def physical(self, p: ResolvedParam, x: float) -> float:
        """The model value parameter ``p`` at ``x`` gives (e.g. the damping in N s/m)."""
        nom = self.nominal_value(p)
        return nom * x if p.mode == "scale" else nom + x

    def apply(self, model, x: np.ndarray) -> None:
        """Write parameter values ``x`` into ``model`` (nominal elsewhere) and re-derive its constants."""
        for a in self._arrays:
            getattr(model, a)[...] = self._nominal[a]
        for p, v in zip(self.params, x):
            v = float(v)
            arr = getattr(model, p.array)
            value = self.physical(p, v)
            if p.column is None:
                arr[p.index] = max(value, 0.0)
            else:
                arr[p.index, p.column] = value
            if p.kind == "body_mass_scale":
                model.body_inertia[p.index] = self._nominal["body_inertia"][p.index] * v
            elif p.kind == "actuator_gain_scale":
                model.actuator_biasprm[p.index, 1:3] = self._nominal["actuator_biasprm"][p.index, 1:3] * v
        mujoco.mj_setConst(model, self._scratch)
