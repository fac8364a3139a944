"""Export a policy (or a learned dynamics ensemble) to ONNX with its sidecar, and check it before writing.

``export_policy`` bakes the whole observation -> robot command path into one graph: the policy module (raw float32
observations in, observation normalization inside, deterministic normalized action in [-1, 1] out), then
``clip(a, -1, 1)`` and the env's affine map to robot commands ``center + half_range * a``: by default the profile's
command limits (``center = (min + max) / 2``, ``half_range = (max - min) / 2``, the map the effort-controlled envs
apply to the actuator range); a position-controlled legged policy passes its own (standing pose + action scale x a,
joint targets in rad). Checks run before any file is written:

* ``onnx.checker.check_model(full_check=True)``;
* parity: torch vs onnxruntime on >= ``min_parity`` observations from the task's own distribution (the caller passes
  them, e.g. from randomized env rollouts); max abs difference in robot units must stay below ``parity_bound``;
* determinism: the same batch twice gives bit-identical output; one-at-a-time equals batched (within the bound);
* every parity action is finite and inside the command limits.

Files are written atomically (temp file, fsync, ``os.replace``): ``policy.onnx`` first, then ``policy.json``; the
runtime refuses a model whose sha256 differs from its sidecar, so a crash in between never yields a usable mix.
Schema of the sidecar: docs/export.md.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import math
import os
import subprocess
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

import robot_rl
from robot_rl.export.runtime import (
    ENSEMBLE_FILES,
    ENSEMBLE_FORMAT,
    POLICY_FILES,
    POLICY_FORMAT,
    action_units,
    make_session,
    profile_contract,
    profile_digest,
    sha256_bytes,
)

DEFAULT_OPSET = 17


class ExportCheckError(RuntimeError):
    """An export check failed; nothing was written."""


class ScaledPolicy(nn.Module):
    """``obs [B, n_obs]`` -> robot command ``[B, n_act]``: ``center + half_range * clip(policy(obs), -1, 1)``.

    ``policy`` maps raw observations to the normalized action in [-1, 1]; ``center`` / ``half_range`` (per command
    joint, command units) map it to robot commands. With ``reference`` (observation column per command joint, e.g.
    the measured joint positions of a delta-action policy) the command is ``obs[:, reference] + center + half_range
    * a``, clipped to ``[low, high]`` (the command limits).
    """

    def __init__(self, policy: nn.Module, center, half_range, reference=None, low=None, high=None):
        super().__init__()
        self.policy = policy
        self.register_buffer("center", torch.as_tensor(np.asarray(center, dtype=np.float32)))
        self.register_buffer("half_range", torch.as_tensor(np.asarray(half_range, dtype=np.float32)))
        self.relative = reference is not None
        if self.relative:
            self.register_buffer("reference", torch.as_tensor(np.asarray(reference, dtype=np.int64)))
            self.register_buffer("low", torch.as_tensor(np.asarray(low, dtype=np.float32)))
            self.register_buffer("high", torch.as_tensor(np.asarray(high, dtype=np.float32)))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        a = torch.clamp(self.policy(obs), -1.0, 1.0)
        if self.relative:
            target = obs.index_select(1, self.reference) + self.center + self.half_range * a
            return torch.minimum(torch.maximum(target, self.low), self.high)
        return self.center + self.half_range * a


# --------------------------------------------------------------------------- helpers


def code_version() -> dict:
    """``robot_rl.__version__`` and, in a git checkout, the commit and whether tracked files are modified."""
    info = {"robot_rl_version": robot_rl.__version__, "git_commit": None, "git_dirty": None}
    root = Path(robot_rl.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        info.update(git_commit=commit, git_dirty=bool(dirty))
    except (OSError, subprocess.SubprocessError):
        pass  # not a checkout (pip / colcon install): the version is all there is
    return info


def _jsonable(obj):
    """Plain JSON data from configs / metrics (dataclasses, numpy scalars, tuples); non-finite floats -> None."""
    import dataclasses

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        from robot_rl.core.config import to_dict

        return _jsonable(to_dict(obj))
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    return str(obj)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same directory, fsync, ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename durable too
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def _to_onnx_bytes(module: nn.Module, args: tuple, input_names, output_names, dynamic_axes, opset: int) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of torch.export (needs onnxscript, not installed); it is
        # still the supported path for small static MLPs and gives a stable opset.
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, buf, input_names=list(input_names), output_names=list(output_names),
                          dynamic_axes=dynamic_axes, opset_version=opset, do_constant_folding=True, dynamo=False)
    return buf.getvalue()


def _finalize_model(data: bytes, metadata: dict[str, str]) -> tuple[bytes, onnx.ModelProto]:
    model = onnx.load_from_string(data)
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name = "robot_rl"
    model.producer_version = robot_rl.__version__
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportCheckError(f"onnx.checker (full_check) rejected the exported model: {exc}") from None
    return model.SerializeToString(), model


def _session(data: bytes) -> ort.InferenceSession:
    return make_session(data, Path("<exported model>"), threads=1)


def _versions() -> dict:
    return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__,
            "numpy": np.__version__}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- policy


def export_policy(module: nn.Module, out_dir: str | Path, *, profile, obs_names, obs_units, parity_obs,
                  env_id: str = "", algo: str = "", config=None, config_hash: str = "", metrics=None,
                  name: str | None = None, parity_source: str = "", opset: int = DEFAULT_OPSET,
                  parity_bound: float = 1e-4, min_parity: int = 1000, extra: dict | None = None,
                  action_map: tuple | None = None, action_reference: list[str] | None = None) -> dict:
    """Export ``module`` (raw obs ``[B, n_obs]`` -> normalized action ``[B, n_act]``) to ``out_dir/policy.onnx``.

    ``profile``: RobotProfile with command limits (command order = action order); ``obs_names``/``obs_units``:
    n_obs strings; ``parity_obs``: float array ``[N >= min_parity, n_obs]`` from the task's distribution;
    ``parity_bound``: largest allowed torch-vs-onnxruntime difference [robot command units]; ``action_map``:
    ``(center, half_range)`` per command joint (default: from the command limits); ``action_reference``: the
    observation names the commands are offsets from (one per command joint; delta actions), or None. Returns the sidecar
    dict (also written to ``out_dir/policy.json``). Raises ``ExportCheckError`` (nothing written) if a check fails.
    """
    out_dir = Path(out_dir)
    obs_names, obs_units = [str(n) for n in obs_names], [str(u) for u in obs_units]
    n_obs, n_act = len(obs_names), len(profile.command_joints)
    x = _parity_observations(profile, obs_units, parity_obs, n_obs, min_parity)
    low = np.asarray(profile.command_min, dtype=np.float64)
    high = np.asarray(profile.command_max, dtype=np.float64)

    module = module.eval().to("cpu", torch.float32)
    with torch.no_grad():
        shape = tuple(module(torch.from_numpy(x)).shape)
    if shape != (len(x), n_act):
        raise ExportCheckError(f"policy output shape {shape}, expected ({len(x)}, {n_act}) for command joints "
                               f"{list(profile.command_joints)}")
    center, half_range, reference, scaling = _command_map(action_map, action_reference, obs_names, n_act, low, high)
    wrapper = ScaledPolicy(module, center, half_range, reference, low, high).eval()
    with torch.no_grad():
        ref = wrapper(torch.from_numpy(x)).numpy().astype(np.float64)
    raw = _to_onnx_bytes(wrapper, (torch.from_numpy(x[:2]),), ["obs"], ["action"],
                         {"obs": {0: "batch"}, "action": {0: "batch"}}, opset)
    digest = profile_digest(profile)
    data, model = _finalize_model(raw, {"robot_rl.format": POLICY_FORMAT, "robot_rl.profile": profile.name,
                                        "robot_rl.profile_digest": digest})
    got, checks = _policy_checks(data, x, ref, low, high, parity_bound, parity_source, out_dir)

    sidecar = {
        "format": POLICY_FORMAT,
        "name": name or out_dir.name,
        "created_utc": _now(),
        "model": {"file": POLICY_FILES[0], "sha256": sha256_bytes(data), "bytes": len(data), "opset": opset,
                  "ir_version": int(model.ir_version),
                  "input": {"name": "obs", "dtype": "float32", "shape": ["batch", n_obs]},
                  "output": {"name": "action", "dtype": "float32", "shape": ["batch", n_act]}},
        "obs": {"n": n_obs, "names": obs_names, "units": obs_units},
        "action": {"n": n_act, "joints": list(profile.command_joints), "units": action_units(profile),
                   "interface": profile.command_interface, "min": low.tolist(), "max": high.tolist(),
                   "scaling": scaling, "center": center.tolist(), "half_range": half_range.tolist(),
                   "reference": None if reference is None else list(action_reference)},
        "control_period_s": float(profile.control_period_s),
        "robot": {"profile": profile.name, "digest": digest, "contract": profile_contract(profile)},
        "env_id": env_id,
        "algo": algo,
        "training": {"config": _jsonable(config), "config_hash": config_hash},
        "code": code_version(),
        "metrics": _jsonable(metrics or {}),
        "checks": checks,
        "probe": {"obs": x[0].astype(np.float64).tolist(), "action": got[0].astype(np.float64).tolist()},
        "versions": _versions(),
    }
    if extra:
        sidecar["extra"] = _jsonable(extra)
    write_atomic(out_dir / POLICY_FILES[0], data)
    write_atomic(out_dir / POLICY_FILES[1], (json.dumps(sidecar, indent=2, allow_nan=False) + "\n").encode())
    return sidecar


def _parity_observations(profile, obs_units: list[str], parity_obs, n_obs: int, min_parity: int) -> np.ndarray:
    """``parity_obs`` as float32 ``[N, n_obs]`` after checking the export's inputs (``ValueError`` /
    ``ExportCheckError`` naming the first problem found).
    """
    if len(obs_units) != n_obs:
        raise ValueError(f"obs_units has {len(obs_units)} entries for {n_obs} obs_names")
    if not profile.command_min or not profile.command_max:
        raise ValueError(f"robot profile {profile.name!r} has no command limits (load it with load_profile)")
    x = np.asarray(parity_obs, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != n_obs:
        raise ValueError(f"parity_obs has shape {x.shape}, expected (N, {n_obs}) for obs_names")
    if len(x) < min_parity:
        raise ExportCheckError(f"parity needs >= {min_parity} observations, got {len(x)}")
    if not np.isfinite(x).all():
        raise ValueError("parity_obs contains non-finite values")
    return x


def _command_map(action_map, action_reference, obs_names: list[str], n_act: int, low: np.ndarray, high: np.ndarray):
    """``(center, half_range, reference, scaling)`` of the normalized action -> robot command map: ``action_map``
    (default: the command limits), with ``reference`` the observation column per command joint of
    ``action_reference`` (delta actions) or None; ``scaling`` describes the map for the sidecar.
    """
    if action_map is None:
        center, half_range = (high + low) / 2, (high - low) / 2
        scaling = "min + (clip(a, -1, 1) + 1) / 2 * (max - min), a = normalized policy action"
    else:
        center, half_range = (np.asarray(v, dtype=np.float64).reshape(-1) for v in action_map)
        if center.shape != (n_act,) or half_range.shape != (n_act,):
            raise ValueError(f"action_map needs ({n_act},) center and half_range, got {center.shape}, "
                             f"{half_range.shape}")
        scaling = "center + half_range * clip(a, -1, 1), a = normalized policy action"
    reference = None
    if action_reference is not None:
        if action_map is None:
            raise ValueError("action_reference needs an action_map (the offsets' center and half_range)")
        missing = [n for n in action_reference if n not in obs_names]
        if len(action_reference) != n_act or missing:
            raise ValueError(f"action_reference needs {n_act} observation names, got {list(action_reference)}"
                             + (f" ({missing} not in obs_names)" if missing else ""))
        reference = [obs_names.index(n) for n in action_reference]
        scaling = ("clip(obs[reference] + center + half_range * clip(a, -1, 1), min, max), a = normalized policy "
                   "action, reference = the observed values the command is an offset from")
    return center, half_range, reference, scaling


def _policy_checks(data: bytes, x: np.ndarray, ref: np.ndarray, low: np.ndarray, high: np.ndarray,
                   parity_bound: float, parity_source: str, out_dir: Path) -> tuple[np.ndarray, dict]:
    """Run the exported bytes in onnxruntime (what the robot will run) on the parity observations ``x``: parity with
    the torch outputs ``ref``, determinism, batch vs single rows, finite outputs inside the command limits. Returns
    ``(outputs, the sidecar's checks)``; raises ``ExportCheckError`` naming every failed check.
    """
    sess = _session(data)
    got = sess.run(["action"], {"obs": x})[0]
    again = sess.run(["action"], {"obs": x})[0]
    parity = float(np.max(np.abs(got.astype(np.float64) - ref)))
    deterministic = bool(np.array_equal(got, again))
    singles = np.concatenate([sess.run(["action"], {"obs": x[i:i + 1]})[0] for i in range(min(64, len(x)))])
    batch_diff = float(np.max(np.abs(singles - got[:len(singles)])))
    finite = bool(np.isfinite(got).all())
    slack = 1e-5 * np.maximum(1.0, high - low)
    in_limits = bool(finite and np.all(got >= low - slack) and np.all(got <= high + slack))
    checks = {
        "onnx_checker_full": True,
        "parity": {"n": int(len(x)), "max_abs_diff": parity, "bound": parity_bound, "units": "robot command units",
                   "source": parity_source, "passed": parity <= parity_bound},
        "deterministic": deterministic,
        "batch_vs_single_max_abs_diff": batch_diff,
        "outputs_finite": finite,
        "outputs_within_limits": in_limits,
    }
    failures = []
    if not finite:
        failures.append("non-finite actions on the parity observations")
    if parity > parity_bound or not math.isfinite(parity):
        failures.append(f"parity max abs diff {parity:.3g} > bound {parity_bound:.3g}")
    if not deterministic:
        failures.append("same input twice gave different outputs")
    if batch_diff > parity_bound:
        failures.append(f"batch vs single-row outputs differ by {batch_diff:.3g} > {parity_bound:.3g}")
    if not in_limits:
        failures.append("actions outside the command limits")
    if failures:
        raise ExportCheckError(f"export checks failed for {out_dir}: " + "; ".join(failures))
    return got, checks


# --------------------------------------------------------------------------- dynamics ensemble


def export_ensemble(module: nn.Module, out_dir: str | Path, *, state_names, action_names, parity_inputs,
                    output_names=None, target: str = "delta", action_units_: str = "normalized [-1, 1]",
                    profile=None, env_id: str = "", algo: str = "pets", config=None, config_hash: str = "",
                    metrics=None, name: str | None = None, control_dt: float | None = None,
                    opset: int = DEFAULT_OPSET, parity_bound: float = 1e-4, min_parity: int = 1000) -> dict:
    """Export a batched dynamics ensemble to ``out_dir/dynamics.onnx`` + ``dynamics.json``.

    ``module(state [B, n_state], action [B, n_act]) -> (mean, logvar)``, each ``[n_members, B, n_out]`` with any
    input/output normalization inside. ``parity_inputs``: ``(states [N, n_state], actions [N, n_act])`` from the
    task's distribution. ``target``: what ``mean`` predicts (``delta`` = next state - state, or ``next_state``);
    ``output_names`` default to ``state_names``. Checks as in ``export_policy`` (parity on mean and logvar).
    """
    out_dir = Path(out_dir)
    state_names, action_names = [str(n) for n in state_names], [str(n) for n in action_names]
    output_names = [str(n) for n in (output_names or state_names)]
    if target not in ("delta", "next_state"):
        raise ValueError(f"target must be 'delta' or 'next_state', got {target!r}")
    s = np.asarray(parity_inputs[0], dtype=np.float32)
    a = np.asarray(parity_inputs[1], dtype=np.float32)
    if s.ndim != 2 or s.shape[1] != len(state_names) or a.ndim != 2 or a.shape[1] != len(action_names) or \
            len(s) != len(a):
        raise ValueError(f"parity_inputs shapes {s.shape} / {a.shape}, expected (N, {len(state_names)}) / "
                         f"(N, {len(action_names)})")
    if len(s) < min_parity:
        raise ExportCheckError(f"parity needs >= {min_parity} inputs, got {len(s)}")
    module = module.eval().to("cpu", torch.float32)
    with torch.no_grad():
        ref_mean, ref_logvar = (t.numpy().astype(np.float64) for t in module(torch.from_numpy(s), torch.from_numpy(a)))
    if ref_mean.ndim != 3 or ref_mean.shape[1:] != (len(s), len(output_names)) or ref_logvar.shape != ref_mean.shape:
        raise ExportCheckError(f"ensemble outputs {ref_mean.shape} / {ref_logvar.shape}, expected "
                               f"(n_members, {len(s)}, {len(output_names)})")
    n_members = ref_mean.shape[0]
    raw = _to_onnx_bytes(module, (torch.from_numpy(s[:2]), torch.from_numpy(a[:2])), ["state", "action"],
                         ["mean", "logvar"], {"state": {0: "batch"}, "action": {0: "batch"}, "mean": {1: "batch"},
                                              "logvar": {1: "batch"}}, opset)
    meta = {"robot_rl.format": ENSEMBLE_FORMAT}
    if profile is not None:
        meta["robot_rl.profile_digest"] = profile_digest(profile)
    data, model = _finalize_model(raw, meta)
    mean, checks = _ensemble_checks(data, s, a, ref_mean, ref_logvar, parity_bound, out_dir)
    sidecar = {
        "format": ENSEMBLE_FORMAT,
        "name": name or out_dir.name,
        "created_utc": _now(),
        "model": {"file": ENSEMBLE_FILES[0], "sha256": sha256_bytes(data), "bytes": len(data), "opset": opset,
                  "ir_version": int(model.ir_version),
                  "inputs": [{"name": "state", "dtype": "float32", "shape": ["batch", len(state_names)]},
                             {"name": "action", "dtype": "float32", "shape": ["batch", len(action_names)]}],
                  "outputs": [{"name": k, "dtype": "float32", "shape": [n_members, "batch", len(output_names)]}
                              for k in ("mean", "logvar")]},
        "n_members": int(n_members),
        "state": {"names": state_names},
        "action": {"names": action_names, "units": action_units_},
        "output": {"names": output_names, "target": target},
        "control_dt": control_dt,
        "robot": None if profile is None else {"profile": profile.name, "digest": profile_digest(profile),
                                               "contract": profile_contract(profile)},
        "env_id": env_id,
        "algo": algo,
        "training": {"config": _jsonable(config), "config_hash": config_hash},
        "code": code_version(),
        "metrics": _jsonable(metrics or {}),
        "checks": checks,
        "probe": {"state": s[:1].astype(np.float64).tolist(), "action": a[:1].astype(np.float64).tolist(),
                  "mean": mean[:, :1].astype(np.float64).tolist()},
        "versions": _versions(),
    }
    write_atomic(out_dir / ENSEMBLE_FILES[0], data)
    write_atomic(out_dir / ENSEMBLE_FILES[1], (json.dumps(sidecar, indent=2, allow_nan=False) + "\n").encode())
    return sidecar


def _ensemble_checks(data: bytes, s: np.ndarray, a: np.ndarray, ref_mean: np.ndarray, ref_logvar: np.ndarray,
                     parity_bound: float, out_dir: Path) -> tuple[np.ndarray, dict]:
    """Run the exported ensemble in onnxruntime on the parity inputs: parity of mean and logvar with the torch
    outputs, determinism, finite outputs. Returns ``(mean, the sidecar's checks)``; raises ``ExportCheckError``
    naming every failed check.
    """
    sess = _session(data)
    feeds = {"state": s, "action": a}
    mean, logvar = sess.run(["mean", "logvar"], feeds)
    mean2, logvar2 = sess.run(["mean", "logvar"], feeds)
    parity = float(max(np.max(np.abs(mean - ref_mean)), np.max(np.abs(logvar - ref_logvar))))
    deterministic = bool(np.array_equal(mean, mean2) and np.array_equal(logvar, logvar2))
    finite = bool(np.isfinite(mean).all() and np.isfinite(logvar).all())
    checks = {"onnx_checker_full": True, "deterministic": deterministic, "outputs_finite": finite,
              "parity": {"n": int(len(s)), "max_abs_diff": parity, "bound": parity_bound,
                         "passed": parity <= parity_bound}}
    failures = [msg for bad, msg in (
        (not finite, "non-finite outputs on the parity inputs"),
        (not parity <= parity_bound, f"parity max abs diff {parity:.3g} > bound {parity_bound:.3g}"),
        (not deterministic, "same input twice gave different outputs")) if bad]
    if failures:
        raise ExportCheckError(f"export checks failed for {out_dir}: " + "; ".join(failures))
    return mean, checks
