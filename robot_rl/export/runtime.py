"""Load and run exported models on the robot: onnxruntime + numpy only (no torch; a test checks the import).

``OnnxPolicy(model_dir, profile)`` (or ``OnnxPolicy.load``) refuses an artifact unless everything matches, each
refusal an ``ArtifactError`` naming expected vs got:

1. ``policy.json`` parses (strict JSON, size-capped) and has the expected format;
2. the sidecar matches the robot profile: measured joints and order, command joints and order, command interface,
   control period, command limits, then the digest of all of them;
3. ``policy.onnx`` is an ONNX protobuf (pickle / zip / truncated / garbage payloads are refused from the bytes alone,
   before anything deserializes them) and its sha256 equals the sidecar's;
4. the graph signature: one input ``obs`` float32 ``[batch, n_obs]``, one output ``action`` float32
   ``[batch, n_act]``;
5. a probe run: zeros and the sidecar's recorded observation give finite actions of the right shape, within the
   command limits, and the recorded observation reproduces the recorded action.

``OnnxEnsemble(model_dir, profile)`` does the same for a learned dynamics ensemble (``dynamics.onnx`` +
``dynamics.json``).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import onnxruntime as ort

POLICY_FORMAT = "robot_rl.policy/1"
ENSEMBLE_FORMAT = "robot_rl.dynamics/1"
POLICY_FILES = ("policy.onnx", "policy.json")
ENSEMBLE_FILES = ("dynamics.onnx", "dynamics.json")
MAX_SIDECAR_BYTES = 16 << 20
MAX_MODEL_BYTES = 1 << 30
F32_MAX = float(np.finfo(np.float32).max)

# ONNX ModelProto top-level fields (onnx/onnx.proto3) -> protobuf wire type (0 varint, 2 length-delimited).
_MODEL_PROTO_FIELDS = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2, 26: 2}


class ArtifactError(ValueError):
    """A model artifact that must not be used (message names the file, the field, expected and got)."""


class PolicyInputError(ValueError):
    """Observation with the wrong shape or a non-finite / out-of-float32-range value."""


class PolicyOutputError(RuntimeError):
    """The model produced a non-finite output."""


# --------------------------------------------------------------------------- profile contract


def action_units(profile) -> list[str]:
    """Command unit per command joint: ``N``/``N m`` (effort), ``m``/``rad`` (position), ``m/s``/``rad/s``."""
    units = []
    for name in profile.command_joints:
        linear = profile.joint(name).position_unit == "m"
        units.append({"effort": "N" if linear else "N m", "position": "m" if linear else "rad",
                      "velocity": "m/s" if linear else "rad/s"}[profile.command_interface])
    return units


def profile_contract(profile) -> dict:
    """The profile fields an exported model depends on (what the digest covers)."""
    return {
        "joints": list(profile.joint_names),
        "command_joints": list(profile.command_joints),
        "command_interface": profile.command_interface,
        "control_period_s": float(profile.control_period_s),
        "command_min": [float(v) for v in profile.command_min],
        "command_max": [float(v) for v in profile.command_max],
        "action_units": action_units(profile),
    }


def profile_digest(profile) -> str:
    """sha256 of ``profile_contract(profile)`` (canonical JSON)."""
    return hashlib.sha256(json.dumps(profile_contract(profile), sort_keys=True).encode()).hexdigest()


def check_profile(sidecar: dict, profile, where: str) -> None:
    """Refuse a sidecar whose robot contract differs from ``profile`` (field by field, then the digest)."""
    got = sidecar.get("robot", {}).get("contract")
    if not isinstance(got, dict):
        raise ArtifactError(f"{where}: sidecar has no robot.contract")
    want = profile_contract(profile)
    for key, exp in want.items():
        val = got.get(key)
        if isinstance(exp, float):
            ok = isinstance(val, (int, float)) and math.isclose(val, exp, rel_tol=1e-9, abs_tol=1e-12)
        elif key in ("command_min", "command_max"):
            ok = isinstance(val, list) and len(val) == len(exp) and all(
                isinstance(v, (int, float)) and math.isclose(v, e, rel_tol=1e-9, abs_tol=1e-12)
                for v, e in zip(val, exp))
        else:
            ok = val == exp
        if not ok:
            raise ArtifactError(f"{where}: {key} does not match robot profile {profile.name!r}: "
                                f"expected {exp!r}, got {val!r} (model exported for profile "
                                f"{sidecar.get('robot', {}).get('profile')!r})")
    digest = profile_digest(profile)
    if sidecar["robot"].get("digest") != digest:
        raise ArtifactError(f"{where}: robot profile digest mismatch: expected {digest}, "
                            f"got {sidecar['robot'].get('digest')}")


# --------------------------------------------------------------------------- files


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _no_constants(token: str):
    raise ValueError(f"non-finite JSON constant {token}")


def read_sidecar(path: Path, fmt: str) -> dict:
    """Parse a sidecar JSON (strict: no NaN/Infinity, size-capped) and check its ``format``."""
    if not path.is_file():
        raise ArtifactError(f"{path}: sidecar missing")
    size = path.stat().st_size
    if size > MAX_SIDECAR_BYTES:
        raise ArtifactError(f"{path}: sidecar is {size} bytes, more than {MAX_SIDECAR_BYTES}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constants)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path}: sidecar is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != fmt:
        got = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ArtifactError(f"{path}: sidecar format: expected {fmt!r}, got {got!r}")
    return data


def _varint(data: bytes, pos: int, path: Path) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(data):
            raise ArtifactError(f"{path}: not an ONNX model: truncated protobuf varint at byte {pos}")
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ArtifactError(f"{path}: not an ONNX model: malformed protobuf varint at byte {pos}")


def check_onnx_payload(data: bytes, path: Path) -> None:
    """Refuse anything but a well-formed ONNX ModelProto, from the raw bytes (nothing is deserialized).

    Recognizes pickle (``torch.save`` before zip), zip (``torch.save``) and empty files by their header, then walks
    the top-level protobuf fields: each must be a ModelProto field with the right wire type, lengths must stay in
    the file (catches truncation), and ``ir_version`` and ``graph`` must be present.
    """
    if not data:
        raise ArtifactError(f"{path}: empty file")
    if data[:1] == b"\x80" and len(data) > 1 and data[1] <= 5:
        raise ArtifactError(f"{path}: refusing a pickle payload (protocol {data[1]}), expected an ONNX protobuf")
    if data[:4] == b"PK\x03\x04":
        raise ArtifactError(f"{path}: refusing a zip archive (a torch.save checkpoint?), expected an ONNX protobuf")
    pos, seen = 0, set()
    while pos < len(data):
        start = pos
        tag, pos = _varint(data, pos, path)
        field, wire = tag >> 3, tag & 7
        if _MODEL_PROTO_FIELDS.get(field) != wire:
            raise ArtifactError(f"{path}: not an ONNX model: unexpected protobuf field {field} (wire type {wire}) "
                                f"at byte {start}")
        if wire == 0:
            _, pos = _varint(data, pos, path)
        else:
            length, pos = _varint(data, pos, path)
            if pos + length > len(data):
                raise ArtifactError(f"{path}: truncated ONNX file: field {field} at byte {start} needs "
                                    f"{pos + length} bytes, file has {len(data)}")
            pos += length
        seen.add(field)
    for field, what in ((1, "ir_version"), (7, "graph")):
        if field not in seen:
            raise ArtifactError(f"{path}: not an ONNX model: no {what}")


def read_model(path: Path, expected_sha256: str) -> bytes:
    """Read a model file, check the payload kind, then its sha256 against the sidecar."""
    if not path.is_file():
        raise ArtifactError(f"{path}: model file missing")
    size = path.stat().st_size
    if size > MAX_MODEL_BYTES:
        raise ArtifactError(f"{path}: model is {size} bytes, more than {MAX_MODEL_BYTES}")
    data = path.read_bytes()
    check_onnx_payload(data, path)
    got = sha256_bytes(data)
    if got != expected_sha256:
        raise ArtifactError(f"{path}: sha256 mismatch: sidecar says {expected_sha256}, file has {got}")
    return data


def make_session(data: bytes, path: Path, threads: int = 1) -> ort.InferenceSession:
    """CPU session, ``threads`` intra-op threads, sequential execution (predictable latency on a robot)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises several unrelated types; all mean "unusable"
        raise ArtifactError(f"{path}: onnxruntime cannot load the model: {exc}") from None


def check_signature(session, path: Path, inputs: list[tuple[str, list]], outputs: list[tuple[str, list]]) -> None:
    """Compare graph inputs/outputs with ``[(name, shape)]``; a ``None`` dim is the dynamic batch axis."""
    for kind, got_args, want in (("input", session.get_inputs(), inputs), ("output", session.get_outputs(), outputs)):
        got = [(a.name, a.type, list(a.shape)) for a in got_args]
        if [g[0] for g in got] != [w[0] for w in want]:
            raise ArtifactError(f"{path}: graph {kind} names: expected {[w[0] for w in want]}, "
                                f"got {[g[0] for g in got]}")
        for (name, dtype, shape), (_, want_shape) in zip(got, want):
            if dtype != "tensor(float)":
                raise ArtifactError(f"{path}: {kind} {name!r} dtype: expected tensor(float) (float32), got {dtype}")
            ok = len(shape) == len(want_shape) and all(
                (isinstance(s, str) or s is None) if w is None else s == w for s, w in zip(shape, want_shape))
            if not ok:
                exp = ["batch" if w is None else w for w in want_shape]
                raise ArtifactError(f"{path}: {kind} {name!r} shape: expected {exp}, got {shape}")


def check_embedded_digest(session, sidecar: dict, path: Path) -> None:
    """The exporter also writes the profile digest into the ONNX metadata; a model from another export refuses."""
    embedded = session.get_modelmeta().custom_metadata_map.get("robot_rl.profile_digest")
    expected = (sidecar.get("robot") or {}).get("digest")
    if embedded is not None and embedded != expected:
        raise ArtifactError(f"{path}: the model's embedded profile digest {embedded} differs from the sidecar's "
                            f"{expected} (model and sidecar come from different exports)")


def _check_finite_f32(x: np.ndarray, names, what: str) -> None:
    bad = ~np.isfinite(x) | (np.abs(x) > F32_MAX)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        col = i % len(names)
        raise PolicyInputError(f"{what}[{i // len(names)}, {col}] ({names[col]}) = {x.reshape(-1)[i]!r} is not a "
                               f"finite float32")


# --------------------------------------------------------------------------- policy


class OnnxPolicy:
    """An exported policy checked against a robot profile. ``policy(obs) -> action`` in robot command units.

    Attributes: ``sidecar`` (dict), ``obs_names`` (n_obs), ``joint_names`` (command joints, n_act),
    ``action_min``/``action_max`` (float64 [n_act]). ``__call__`` reuses preallocated buffers: one caller thread.
    """

    def __init__(self, model_dir: str | Path, profile, *, obs_names=None, threads: int = 1):
        """Load ``model_dir/policy.onnx`` + ``policy.json`` for ``profile``; ``ArtifactError`` if anything differs.

        ``obs_names``: the observation layout the caller will feed (e.g. ``ObservationBuilder.names``); checked
        against the sidecar when given. ``threads``: onnxruntime intra-op threads (1: predictable latency).
        """
        model_dir = Path(model_dir)
        onnx_path, json_path = (model_dir / f for f in POLICY_FILES)
        sc = read_sidecar(json_path, POLICY_FORMAT)
        try:
            names = [str(n) for n in sc["obs"]["names"]]
            joints = [str(j) for j in sc["action"]["joints"]]
            sha = str(sc["model"]["sha256"])
            for key in ("min", "max"):
                if len(sc["action"][key]) != len(joints):
                    raise ArtifactError(f"{json_path}: action.{key} has {len(sc['action'][key])} values "
                                        f"for {len(joints)} joints")
        except (KeyError, TypeError) as exc:
            raise ArtifactError(f"{json_path}: sidecar lacks field {exc}") from None
        check_profile(sc, profile, str(json_path))
        if obs_names is not None and list(obs_names) != names:
            raise ArtifactError(f"{json_path}: observation layout: expected {list(obs_names)}, got {names}")
        data = read_model(onnx_path, sha)
        session = make_session(data, onnx_path, threads)
        check_signature(session, onnx_path, [("obs", [None, len(names)])], [("action", [None, len(joints)])])
        check_embedded_digest(session, sc, onnx_path)
        self.session = session
        self.sidecar = sc
        self.path = onnx_path
        self.obs_names = tuple(names)
        self.joint_names = tuple(joints)
        self.n_obs = len(self.obs_names)
        self.n_act = len(self.joint_names)
        self.action_min = np.asarray(sc["action"]["min"], dtype=np.float64)
        self.action_max = np.asarray(sc["action"]["max"], dtype=np.float64)
        # Preallocated buffers bound once: a call copies the observation in and runs (no per-call output arrays).
        self._in = np.zeros((1, self.n_obs), dtype=np.float32)
        self._out = np.zeros((1, self.n_act), dtype=np.float32)
        self._bad_in = np.zeros((1, self.n_obs), dtype=bool)
        self._bad_out = np.zeros((1, self.n_act), dtype=bool)
        self._binding = session.io_binding()
        self._binding.bind_input("obs", "cpu", 0, np.float32, list(self._in.shape), self._in.ctypes.data)
        self._binding.bind_output("action", "cpu", 0, np.float32, list(self._out.shape), self._out.ctypes.data)
        self._probe()

    @classmethod
    def load(cls, model_dir: str | Path, profile, **kwargs) -> OnnxPolicy:
        """Same as ``OnnxPolicy(model_dir, profile, **kwargs)``."""
        return cls(model_dir, profile, **kwargs)

    def _probe(self) -> None:
        """Load-time run: zeros and the recorded observation -> finite, in-limit actions; the recorded action."""
        probe = self.sidecar.get("probe", {})
        tol = float(self.sidecar.get("checks", {}).get("parity", {}).get("bound", 1e-4))
        cases = [("zeros", np.zeros(self.n_obs), None)]
        if "obs" in probe:
            cases.append(("recorded probe", np.asarray(probe["obs"], dtype=np.float64),
                          np.asarray(probe["action"], dtype=np.float64)))
        for label, obs, expected in cases:
            try:
                act = self(obs)
            except (PolicyInputError, PolicyOutputError) as exc:
                raise ArtifactError(f"{self.path}: probe run on {label} observation failed: {exc}") from None
            slack = 1e-5 * np.maximum(1.0, np.abs(self.action_max - self.action_min))
            if np.any(act < self.action_min - slack) or np.any(act > self.action_max + slack):
                raise ArtifactError(f"{self.path}: probe on {label} observation gave {act.tolist()}, outside "
                                    f"the command limits [{self.action_min.tolist()}, {self.action_max.tolist()}]")
            if expected is not None and (expected.shape != act.shape or np.max(np.abs(act - expected)) > tol):
                raise ArtifactError(f"{self.path}: probe action: expected {expected.tolist()}, got {act.tolist()} "
                                    f"(tolerance {tol})")

    def __call__(self, obs, out: np.ndarray | None = None) -> np.ndarray:
        """One observation ``[n_obs]`` (or ``[1, n_obs]``, raw robot units) -> action float64 ``[n_act]``.

        Raises ``PolicyInputError`` (shape, non-finite) or ``PolicyOutputError`` (non-finite action).
        ``out``: optional float64 ``[n_act]`` buffer written and returned.
        """
        x = obs if type(obs) is np.ndarray else np.asarray(obs)
        if x.size != self.n_obs or x.ndim > 2 or (x.ndim == 2 and x.shape[0] != 1):
            raise PolicyInputError(f"obs has shape {x.shape}, expected ({self.n_obs},) or (1, {self.n_obs})")
        try:
            if x.dtype == np.float32:  # the ObservationBuilder's dtype: a plain copy
                self._in[0] = x.reshape(-1)
            else:
                with np.errstate(over="ignore", invalid="ignore"):  # beyond float32 range -> inf, reported below
                    self._in[0] = x.reshape(-1)
        except (TypeError, ValueError) as exc:
            raise PolicyInputError(f"obs is not numeric: {exc}") from None
        if not np.isfinite(self._in, out=self._bad_in).all():
            _check_finite_f32(np.asarray(x, dtype=np.float64).reshape(-1), self.obs_names, "obs")
        self.session.run_with_iobinding(self._binding)
        if not np.isfinite(self._out, out=self._bad_out).all():
            raise PolicyOutputError(f"{self.path}: non-finite action {self._out[0].tolist()} for joints "
                                    f"{list(self.joint_names)}")
        if out is None:
            return self._out[0].astype(np.float64)
        out[:] = self._out[0]
        return out

    def predict_batch(self, obs: np.ndarray) -> np.ndarray:
        """A batch ``[B, n_obs]`` -> actions float32 ``[B, n_act]`` (checked like ``__call__``)."""
        x = np.asarray(obs, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_obs:
            raise PolicyInputError(f"obs batch has shape {x.shape}, expected (B, {self.n_obs})")
        _check_finite_f32(x, self.obs_names, "obs")
        act = self.session.run(["action"], {"obs": x.astype(np.float32)})[0]
        if not np.isfinite(act).all():
            raise PolicyOutputError(f"{self.path}: non-finite actions in a batch of {len(x)}")
        return act


# --------------------------------------------------------------------------- dynamics ensemble


class OnnxEnsemble:
    """An exported learned dynamics ensemble: ``(state [B, n_state], action [B, n_act]) -> (mean, logvar)``.

    Outputs are float32 ``[n_members, B, n_out]``; what they predict (``target``: next state or its delta) and the
    action units are in ``sidecar``.
    """

    def __init__(self, model_dir: str | Path, profile=None, *, threads: int = 1):
        """Load ``model_dir/dynamics.onnx`` + ``dynamics.json`` (checked against ``profile`` when the sidecar names
        one); ``ArtifactError`` if anything differs.
        """
        model_dir = Path(model_dir)
        onnx_path, json_path = (model_dir / f for f in ENSEMBLE_FILES)
        sc = read_sidecar(json_path, ENSEMBLE_FORMAT)
        try:
            self.state_names = tuple(str(n) for n in sc["state"]["names"])
            self.action_names = tuple(str(n) for n in sc["action"]["names"])
            self.output_names = tuple(str(n) for n in sc["output"]["names"])
            self.n_members = int(sc["n_members"])
            self.target = str(sc["output"]["target"])
            sha = str(sc["model"]["sha256"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"{json_path}: sidecar lacks or mangles field {exc}") from None
        if profile is not None and sc.get("robot") is not None:
            check_profile(sc, profile, str(json_path))
        data = read_model(onnx_path, sha)
        session = make_session(data, onnx_path, threads)
        n_s, n_a, n_o = len(self.state_names), len(self.action_names), len(self.output_names)
        check_signature(session, onnx_path, [("state", [None, n_s]), ("action", [None, n_a])],
                        [("mean", [self.n_members, None, n_o]), ("logvar", [self.n_members, None, n_o])])
        check_embedded_digest(session, sc, onnx_path)
        self.session = session
        self.sidecar = sc
        self.path = onnx_path
        self._probe()

    @classmethod
    def load(cls, model_dir: str | Path, profile=None, **kwargs) -> OnnxEnsemble:
        """Same as ``OnnxEnsemble(model_dir, profile, **kwargs)``."""
        return cls(model_dir, profile, **kwargs)

    def _probe(self) -> None:
        probe = self.sidecar.get("probe", {})
        cases = [("zeros", np.zeros((1, len(self.state_names))), np.zeros((1, len(self.action_names))), None)]
        if "state" in probe:
            cases.append(("recorded probe", np.asarray(probe["state"]), np.asarray(probe["action"]),
                          np.asarray(probe["mean"])))
        tol = float(self.sidecar.get("checks", {}).get("parity", {}).get("bound", 1e-4))
        for label, s, a, expected in cases:
            try:
                mean, logvar = self(s, a)
            except (PolicyInputError, PolicyOutputError) as exc:
                raise ArtifactError(f"{self.path}: probe run on {label} input failed: {exc}") from None
            if expected is not None and (expected.shape != mean.shape or np.max(np.abs(mean - expected)) > tol):
                raise ArtifactError(f"{self.path}: probe mean differs from the recorded one by "
                                    f"{np.max(np.abs(mean - expected)) if expected.shape == mean.shape else 'shape'}"
                                    f" (tolerance {tol})")

    def __call__(self, state, action) -> tuple[np.ndarray, np.ndarray]:
        """``state [B, n_state]``, ``action [B, n_act]`` -> ``(mean, logvar)`` float32 ``[n_members, B, n_out]``."""
        s = np.asarray(state, dtype=np.float64)
        a = np.asarray(action, dtype=np.float64)
        if s.ndim != 2 or a.ndim != 2 or s.shape[1] != len(self.state_names) or \
                a.shape[1] != len(self.action_names) or s.shape[0] != a.shape[0]:
            raise PolicyInputError(f"state {s.shape} / action {a.shape}: expected (B, {len(self.state_names)}) / "
                                   f"(B, {len(self.action_names)})")
        _check_finite_f32(s, self.state_names, "state")
        _check_finite_f32(a, self.action_names, "action")
        mean, logvar = self.session.run(["mean", "logvar"], {"state": s.astype(np.float32),
                                                             "action": a.astype(np.float32)})
        if not (np.isfinite(mean).all() and np.isfinite(logvar).all()):
            raise PolicyOutputError(f"{self.path}: non-finite ensemble output")
        return mean, logvar
