"""Outputs of a sysid fit: the printed table, the JSON report and a randomization profile re-centred on the fit.

The profile keeps a base profile's terms and spreads (``sim/randomization/default.yaml`` unless told otherwise) and
moves each fitted term's range onto the identified values: a scale range ``[a, b]`` becomes ``[c_min a, c_max b]``,
an offset range ``[c_min + a, c_max + b]``, where ``c`` are the identified values of the term's elements (neutral,
1 or 0, for matched elements not fitted), widened to cover each estimate +- 3 std. The schema holds one range per
term, so elements fitted to different values widen that range. The latency range keeps its width around the fit
and covers every latency the log cannot tell from it (a cost within ``LATENCY_TIE`` x the best: an actual delay
between two whole control steps, e.g. one step plus the ROS transport, fits both about equally).

``widen=True`` keeps the base's ranges and extends them to cover the re-centred ones (their hull): a policy trained
on it still sees the robots it was trained for and, in addition, the identified one, instead of only a narrow band
around an estimate that may be biased (the fit finds an equivalent robot, not the drawn parameters).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from pathlib import Path

import mujoco
import numpy as np
import yaml

from robot_rl.envs.randomization import Randomizer, match
from robot_rl.envs.randomization_config import RandomizationConfig, load_randomization
from robot_rl.sysid.fit import FitResult
from robot_rl.sysid.params import KINDS, ResolvedParam

# parameter kind -> (profile term, range field)
_TERM = {"body_mass_scale": ("body_mass", "scale"), "joint_damping_scale": ("joint_damping", "scale"),
         "joint_damping_offset": ("joint_damping", "offset"), "armature_offset": ("armature", "offset"),
         "frictionloss_offset": ("frictionloss", "offset"), "actuator_gain_scale": ("actuator_gain", "scale")}


LATENCY_TIE = 1.5
"""Latencies whose re-simulation cost is within this factor of the best one stay in the re-centred range."""

def result_dict(result: FitResult, params: list[ResolvedParam], **extra) -> dict:
    """The JSON report: per parameter estimate, std, model value and bounds; latency; errors before/after."""
    rows = [{"name": p.name, "value": float(v), "std": float(s), "model_value": float(ph),
             "nominal_model_value": float(nom), "lower": p.lower, "upper": p.upper}
            for p, v, s, ph, nom in zip(params, result.values, result.std, result.physical, result.nominal_physical)]
    return {**extra, "parameters": rows, "action_latency_steps": result.latency,
            "latency_mse": {str(k): v for k, v in result.latency_costs.items()},
            "correlation": np.round(result.correlation, 4).tolist(), "windows": result.windows,
            "window_steps": result.window_steps, "error_before": result.error_before,
            "error_after": result.error_after, "notes": list(result.notes)}


def format_table(result: FitResult) -> str:
    """Human-readable summary: parameters with std and model values, latency, per-joint errors before/after."""
    lines = [f"{'parameter':<34} {'estimate':>11} {'std':>10} {'model value':>12} {'nominal':>11}"]
    for n, v, s, ph, nom in zip(result.names, result.values, result.std, result.physical, result.nominal_physical):
        lines.append(f"{n:<34} {v:>11.5g} {s:>10.2g} {ph:>12.5g} {nom:>11.5g}")
    costs = ", ".join(f"{k}: {v:.3g}" for k, v in result.latency_costs.items())
    lines.append(f"{'action_latency_steps':<34} {result.latency:>11d}   (mean squared scaled residual per latency: "
                 f"{costs})")
    lines.append(f"re-simulation error over {result.windows} windows of {result.window_steps} steps "
                 "(RMS, nominal model -> fitted):")
    for j, b in result.error_before.items():
        a = result.error_after[j]
        lines.append(f"  {j:<12} position {b['position_rms']:.4g} -> {a['position_rms']:.4g}   "
                     f"velocity {b['velocity_rms']:.4g} -> {a['velocity_rms']:.4g}")
    lines += [f"note: {n}" for n in result.notes]
    return "\n".join(lines)


def _ranges(result: FitResult, params: list[ResolvedParam]) -> dict[tuple[str, str], list[tuple[str, float, float]]]:
    """(term, field) -> [(element, estimate, std)] of the fitted continuous parameters."""
    out: dict[tuple[str, str], list] = {}
    for p, v, s in zip(params, result.values, result.std):
        out.setdefault(_TERM[p.kind], []).append((p.name.partition("/")[2], float(v), float(s)))
    return out


def recentred_profile(result: FitResult, params: list[ResolvedParam], model, base=None, widen: bool = False) -> dict:
    """A randomization profile (plain dict, the YAML schema) re-centred on ``result`` (``widen``: the hull of the
    base's and the re-centred ranges); see the module docstring.
    """
    cfg = load_randomization(base) if base is not None else None
    doc = {} if cfg is None else {k: _plain(v) for k, v in dataclasses.asdict(cfg).items() if v is not None}
    for (term, fld), fits in _ranges(result, params).items():
        neutral = 1.0 if fld == "scale" else 0.0
        entry = doc.get(term) or {"targets": "|".join(sorted({e for e, _, _ in fits})), "scale": [1.0, 1.0],
                                  "offset": [0.0, 0.0]}
        kind = next(k for k, v in _TERM.items() if v == (term, fld))
        _, matched = match(model, term, KINDS[kind][0], entry.get("targets", "all"))
        fitted = {e for e, _, _ in fits}
        centres = [v for _, v, _ in fits] + ([neutral] if set(matched) - fitted else [])
        a, b = entry.get(fld, [neutral, neutral])
        if fld == "scale":
            lo, hi = min(centres) * a, max(centres) * b
        else:
            lo, hi = min(centres) + a, max(centres) + b
        lo = min(lo, *(v - 3 * s for _, v, s in fits))
        hi = max(hi, *(v + 3 * s for _, v, s in fits))
        if widen:
            lo, hi = min(lo, a), max(hi, b)
        if fld == "scale":
            lo = max(lo, 0.0)
        entry[fld] = [float(f"{lo:.6g}"), float(f"{hi:.6g}")]
        doc[term] = entry
    lat = doc.get("action_latency", {"steps": [0, 0]})["steps"]
    width = int(lat[1]) - int(lat[0])
    best = result.latency_costs.get(result.latency)
    close = sorted(k for k, c in result.latency_costs.items() if best is not None and c <= LATENCY_TIE * best) \
        or [result.latency]
    lo, hi = close[0], close[-1]
    if hi - lo < width:
        lo = max(0, min(lo, result.latency - width // 2))
        hi = max(hi, lo + width)
    if widen:
        lo, hi = min(lo, int(lat[0])), max(hi, int(lat[1]))
    doc["action_latency"] = {"steps": [int(lo), int(hi)]}
    return doc


def _plain(value):
    """dataclasses.asdict output -> YAML-friendly (tuples as lists)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def write_profile(doc: dict, path: str | Path, model, header: str) -> RandomizationConfig:
    """Write ``doc`` as YAML (with a comment ``header``), load it back with the project's loader and resolve its
    targets on ``model`` (a profile that does not load is an error here, not at training time).
    """
    path = Path(path)
    body = yaml.safe_dump(doc, sort_keys=False, default_flow_style=None)
    _write_text_atomic(path, "".join(f"# {line}\n" for line in header.splitlines()) + body)
    cfg = load_randomization(str(path))
    scratch = copy.copy(model)  # a Randomizer may re-flag bodies of the model it is built on
    Randomizer(cfg, scratch, mujoco.MjData(scratch))
    return cfg


def write_json(report: dict, path: str | Path) -> None:
    def default(o):
        if isinstance(o, (np.floating, np.integer)):
            return o.item()
        raise TypeError(f"not JSON serializable: {type(o).__name__}")

    clean = json.loads(json.dumps(report, default=default), parse_constant=lambda c: None)
    _write_text_atomic(Path(path), json.dumps(clean, indent=2, allow_nan=False) + "\n")


def _write_text_atomic(path: Path, text: str) -> None:
    """Write through a temporary file in the same directory and rename it over ``path``: a reader (or a crash)
    never sees half a file.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
