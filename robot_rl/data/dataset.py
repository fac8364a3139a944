"""Episode datasets on disk in Minari's HDF5 layout, plus robot_rl metadata and a damage-tolerant reader.

Layout of a dataset directory ``DIR`` (the layout Minari's ``HDF5Storage`` reads, so ``minari.MinariDataset(DIR /
"data")`` or ``minari.load_dataset(id)`` with ``MINARI_DATASETS_PATH`` set opens it)::

    DIR/data/main_data.hdf5     episode_<i>/observations (T+1, ...) or a group of dict keys, actions (T, n_act),
                                rewards (T,), terminations (T,), truncations (T,), infos/time_s (T+1,), infos/...
    DIR/data/metadata.json      Minari keys (dataset_id, minari_version, spaces, env_spec, totals) + "robot_rl"

``metadata.json["robot_rl"]`` holds the env id, randomization profile, provenance (controller, code version, seed,
UTC time), control period [s], observation/action names and a byte index: for every episode and array its file
offset, size, dtype, shape and CRC-32. Arrays are stored contiguous and uncompressed, so the reader takes each
array straight from its byte range and checks its CRC; a truncated or bit-flipped file loses only the damaged
episodes, and the report names the file, byte range and time range of each (see ``robot_rl.data.checks``). The
metadata is stored twice (the JSON file and a root attribute of the HDF5 file) so one damaged copy is survivable.
"""

from __future__ import annotations

import json
import os
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import gymnasium as gym
import h5py
import numpy as np

from robot_rl.data.checks import Damage, EpisodeReport, LoadReport, check_episode

MINARI_VERSION = "0.5.0"
"""Minari dataset format version written into metadata.json (a version Minari 0.5.x reads)."""
FORMAT_VERSION = 1
DATASET_ID_RE = re.compile(r"^(?:[-_\w][-_\w/]*[-_\w]+/)?[-_\w]+?-v\d+$")
_META_ATTR = "robot_rl_metadata_json"


class DatasetError(ValueError):
    """A dataset that cannot be read at all (no readable metadata); the message names the file."""


@dataclass
class Episode:
    """One episode. ``T`` = number of steps.

    Attributes:
        observations: ``(T+1, n_obs)`` float32, or for Dict spaces a dict of ``(T+1, d_key)`` arrays.
        actions: ``(T, n_act)`` float32, normalized to [-1, 1].
        rewards: ``(T,)`` float64.
        terminations / truncations: ``(T,)`` bool.
        time_s: ``(T+1,)`` float64 timestamps [s] of the observations (step k's action acts on [t_k, t_k+1)).
        infos: extra per-observation arrays, each ``(T+1, ...)`` (e.g. ``joint_positions``, ``is_success``).
        metadata: per-episode data: ``seed``, ``randomization`` (sampled parameter values, flat keys), ...

    """

    observations: np.ndarray | dict[str, np.ndarray]
    actions: np.ndarray
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray
    time_s: np.ndarray
    infos: dict[str, np.ndarray] = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.actions)


# --------------------------------------------------------------------------- Minari-style space serialization


def serialize_space(space: gym.Space) -> dict:
    """Space -> JSON-able dict in Minari's serialization (``minari.serialization.serialize_space``)."""
    if isinstance(space, gym.spaces.Box):
        return {"type": "Box", "dtype": str(space.dtype), "shape": list(space.shape),
                "low": space.low.tolist(), "high": space.high.tolist()}
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "dtype": "int64", "start": int(space.start), "n": int(space.n)}
    if isinstance(space, gym.spaces.Dict):
        return {"type": "Dict", "subspaces": {k: serialize_space(s) for k, s in space.spaces.items()}}
    raise TypeError(f"cannot serialize space {space}: only Box, Discrete and Dict are supported")


def deserialize_space(data: dict) -> gym.Space:
    kind = data.get("type")
    if kind == "Box":
        return gym.spaces.Box(low=np.asarray(data["low"], dtype=data["dtype"]),
                              high=np.asarray(data["high"], dtype=data["dtype"]),
                              shape=tuple(data["shape"]), dtype=data["dtype"])
    if kind == "Discrete":
        return gym.spaces.Discrete(n=data["n"], start=data["start"])
    if kind == "Dict":
        return gym.spaces.Dict({k: deserialize_space(v) for k, v in data["subspaces"].items()})
    raise ValueError(f"unsupported serialized space type {kind!r}")


# --------------------------------------------------------------------------- writer


def _flatten(prefix: str, value) -> dict[str, np.ndarray]:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out.update(_flatten(f"{prefix}/{k}", v))
        return out
    return {prefix: np.ascontiguousarray(value)}


def _episode_arrays(ep: Episode) -> dict[str, np.ndarray]:
    arrays = {}
    obs = ep.observations
    if isinstance(obs, dict):
        arrays.update(_flatten("observations", {k: np.asarray(v, dtype=np.float32) for k, v in obs.items()}))
    else:
        arrays["observations"] = np.ascontiguousarray(obs, dtype=np.float32)
    arrays["actions"] = np.ascontiguousarray(ep.actions, dtype=np.float32)
    arrays["rewards"] = np.ascontiguousarray(ep.rewards, dtype=np.float64)
    arrays["terminations"] = np.ascontiguousarray(ep.terminations, dtype=bool)
    arrays["truncations"] = np.ascontiguousarray(ep.truncations, dtype=bool)
    arrays["infos/time_s"] = np.ascontiguousarray(ep.time_s, dtype=np.float64)
    for k, v in ep.infos.items():
        arrays.update(_flatten(f"infos/{k}", np.asarray(v)))
    return arrays


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


class DatasetWriter:
    """Write episodes one at a time (``add``), then ``close``. After every episode the file is flushed and
    metadata.json replaced atomically, so a killed collector leaves a readable dataset of the finished episodes.

    Args:
        path: dataset directory (created; must not contain a dataset already).
        dataset_id: Minari id, ``[namespace/]name-v<N>``.
        observation_space / action_space: the env's spaces (checked against every episode on ``add``).
        robot_rl_metadata: env id, randomization profile, provenance, control period, names (free-form JSON).
        env_spec: ``env.spec`` when the env is registered with Gymnasium (stored Minari-style if serializable).

    """

    def __init__(self, path: str | Path, *, dataset_id: str, observation_space: gym.Space, action_space: gym.Space,
                 robot_rl_metadata: dict, env_spec=None):
        if not DATASET_ID_RE.match(dataset_id):
            raise ValueError(f"dataset id {dataset_id!r} is not of the form [namespace/]name-v<N>")
        self.root = Path(path)
        self.data_dir = self.root / "data"
        self.h5_path = self.data_dir / "main_data.hdf5"
        self.meta_path = self.data_dir / "metadata.json"
        if self.meta_path.exists() or self.h5_path.exists():
            raise FileExistsError(f"{self.data_dir} already holds a dataset; choose another --out")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.observation_space, self.action_space = observation_space, action_space
        self.meta = {
            "dataset_id": dataset_id, "minari_version": MINARI_VERSION, "data_format": "hdf5",
            "jpeg_encoding": False, "total_episodes": 0, "total_steps": 0,
            "observation_space": json.dumps(serialize_space(observation_space)),
            "action_space": json.dumps(serialize_space(action_space)),
            "robot_rl": {"format_version": FORMAT_VERSION, **_jsonable(robot_rl_metadata), "index": []},
        }
        if env_spec is not None:
            try:
                self.meta["env_spec"] = env_spec.to_json()
            except (TypeError, ValueError):
                pass  # kwargs not JSON-serializable: the robot_rl env id is still stored
        self._file = h5py.File(self.h5_path, "w", libver="latest")

    def add(self, episode: Episode) -> int:
        """Append one episode (after the semantic checks); returns its id."""
        issues = check_episode(episode, self.observation_space, self.action_space)
        if issues:
            raise ValueError(f"episode {self.meta['total_episodes']} fails the dataset checks: " + "; ".join(issues))
        ep_id = self.meta["total_episodes"]
        grp = self._file.create_group(f"episode_{ep_id}")
        grp.attrs["id"] = ep_id
        grp.attrs["total_steps"] = len(episode)
        if episode.metadata.get("seed") is not None:
            grp.attrs["seed"] = int(episode.metadata["seed"])
        index = {}
        for name, arr in _episode_arrays(episode).items():
            ds = grp.create_dataset(name, data=arr)  # contiguous, uncompressed: byte range is the raw array
            index[name] = {"offset": None, "nbytes": int(arr.nbytes), "dtype": arr.dtype.str,
                           "shape": list(arr.shape), "crc32": zlib.crc32(arr.tobytes())}
            index[name]["_ds"] = ds
        self._file.flush()
        for entry in index.values():
            off = entry.pop("_ds").id.get_offset()
            entry["offset"] = None if off is None else int(off)
        t = np.asarray(episode.time_s, dtype=np.float64)
        self.meta["robot_rl"]["index"].append({
            "id": ep_id, "steps": len(episode), "t0": float(t[0]), "t1": float(t[-1]),
            "metadata": _jsonable(episode.metadata), "arrays": index})
        self.meta["total_episodes"] += 1
        self.meta["total_steps"] += len(episode)
        self._write_meta()
        return ep_id

    def _write_meta(self) -> None:
        self.meta["dataset_size"] = round(os.path.getsize(self.h5_path) / 1e6, 3)
        tmp = self.meta_path.with_suffix(".json.tmp")
        with open(tmp, "w") as f:
            json.dump(self.meta, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.meta_path)

    def close(self) -> None:
        if self._file is None:
            return
        self._file.attrs[_META_ATTR] = json.dumps(self.meta)
        self._file.close()
        self._file = None
        self._write_meta()

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------- reader


@dataclass
class EpisodeDataset:
    """A loaded dataset: only episodes that passed every check, plus the report of what was dropped and why."""

    path: Path
    episodes: list[Episode]
    observation_space: gym.Space
    action_space: gym.Space
    metadata: dict
    """The ``robot_rl`` part of metadata.json (env id, provenance, control period, ...), without the byte index."""
    report: LoadReport

    @property
    def dataset_id(self) -> str:
        return self.metadata.get("dataset_id", "")

    @property
    def n_steps(self) -> int:
        return sum(len(e) for e in self.episodes)


def _read_meta(data_dir: Path, report: LoadReport) -> dict:
    meta_path, h5_path = data_dir / "metadata.json", data_dir / "main_data.hdf5"
    try:
        with open(meta_path) as f:
            return json.load(f)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        report.notes.append(f"{meta_path} unreadable ({exc.__class__.__name__}: {exc}); using the HDF5 copy")
    try:
        with h5py.File(h5_path, "r") as f:
            return json.loads(f.attrs[_META_ATTR])
    except Exception as exc:  # h5py raises OSError/KeyError/RuntimeError variants on damaged files
        raise DatasetError(f"{data_dir}: neither metadata.json nor the copy in main_data.hdf5 is readable "
                           f"({exc.__class__.__name__}: {exc})") from None


def _unflatten(flat: dict[str, np.ndarray]) -> dict:
    out: dict = {}
    for key, val in flat.items():
        parts = key.split("/")
        cur = out
        for p in parts[:-1]:
            cur = cur.setdefault(p, {})
        cur[parts[-1]] = val
    return out


def _episode_from_arrays(arrays: dict[str, np.ndarray], metadata: dict) -> Episode:
    tree = _unflatten(arrays)
    infos = dict(tree.get("infos", {}))
    time_s = infos.pop("time_s", None)
    if time_s is None:
        raise KeyError("infos/time_s missing")
    return Episode(observations=tree["observations"], actions=tree["actions"], rewards=tree["rewards"],
                   terminations=tree["terminations"], truncations=tree["truncations"], time_s=time_s,
                   infos=infos, metadata=metadata)


def _read_indexed(h5_path: Path, entry: dict, size: int, fh) -> tuple[dict | None, list[str], tuple[int, int]]:
    """Arrays of one episode from its byte ranges; (None, problems, byte range) when damaged."""
    arrays, problems = {}, []
    spans = [(a["offset"], a["offset"] + a["nbytes"]) for a in entry["arrays"].values() if a["offset"] is not None]
    byte_range = (min(s for s, _ in spans), max(e for _, e in spans)) if spans else (0, 0)
    for name, a in entry["arrays"].items():
        if a["offset"] is None:
            problems.append(f"{name}: no byte offset recorded")
            continue
        start, end = a["offset"], a["offset"] + a["nbytes"]
        if end > size:
            problems.append(f"{name}: bytes [{start}, {end}) beyond the end of the file ({size} B): file truncated")
            continue
        fh.seek(start)
        raw = fh.read(a["nbytes"])
        if zlib.crc32(raw) != a["crc32"]:
            problems.append(f"{name}: CRC-32 mismatch in bytes [{start}, {end}) (bit damage)")
            continue
        arrays[name] = np.frombuffer(raw, dtype=np.dtype(a["dtype"])).reshape(a["shape"]).copy()
    return (None if problems else arrays), problems, byte_range


def _read_h5_episode(f: h5py.File, name: str) -> dict[str, np.ndarray]:
    arrays = {}

    def visit(path, obj):
        if isinstance(obj, h5py.Dataset):
            arrays[path] = obj[()]

    f[name].visititems(visit)
    return arrays


def load_dataset(path: str | Path) -> EpisodeDataset:
    """Load a dataset directory (``DIR`` or ``DIR/data``), keeping every intact episode that passes the checks.

    Never raises on damage inside the files: damaged or failing episodes are dropped and described in
    ``dataset.report`` (file, byte range, time range, reason). Raises ``DatasetError`` only when no metadata at all
    can be read, and ``FileNotFoundError`` when the path holds no dataset.
    """
    root = Path(path)
    data_dir = root if (root / "main_data.hdf5").exists() else root / "data"  # (a dataset may be named "data")
    h5_path = data_dir / "main_data.hdf5"
    if not h5_path.exists():
        raise FileNotFoundError(f"no dataset at {root}: {h5_path} does not exist")
    report = LoadReport(source=str(h5_path))
    meta = _read_meta(data_dir, report)
    try:
        obs_space = deserialize_space(json.loads(meta["observation_space"]))
        act_space = deserialize_space(json.loads(meta["action_space"]))
    except (KeyError, ValueError, TypeError) as exc:
        raise DatasetError(f"{data_dir}: metadata has no valid observation/action space ({exc})") from None
    rr = dict(meta.get("robot_rl", {}))
    index = rr.pop("index", None)
    rr["dataset_id"] = meta.get("dataset_id", "")
    size = h5_path.stat().st_size
    episodes: list[Episode] = []

    def keep(name: str, ep: Episode, t_range, b_range) -> None:
        issues = check_episode(ep, obs_space, act_space)
        report.episodes.append(EpisodeReport(name, len(ep.actions), not issues, issues, t_range, b_range))
        if not issues:
            episodes.append(ep)

    if index is not None:
        with open(h5_path, "rb") as fh:
            for entry in index:
                name, t_range = f"episode_{entry['id']}", (entry["t0"], entry["t1"])
                arrays, problems, b_range = _read_indexed(h5_path, entry, size, fh)
                if arrays is None:
                    report.episodes.append(EpisodeReport(name, entry["steps"], False, problems, t_range, b_range))
                    report.damage.append(Damage(b_range, t_range, "; ".join(problems),
                                                f"{name} ({entry['steps']} steps)", file=str(h5_path)))
                    continue
                try:
                    ep = _episode_from_arrays(arrays, entry.get("metadata", {}))
                except KeyError as exc:
                    report.episodes.append(EpisodeReport(name, entry["steps"], False, [f"missing {exc}"],
                                                         t_range, b_range))
                    continue
                keep(name, ep, t_range, b_range)
        return EpisodeDataset(root, episodes, obs_space, act_space, rr, report)

    # A Minari dataset written by someone else (no byte index): read through HDF5, episode by episode.
    report.notes.append("no robot_rl byte index: read through HDF5 without per-array CRC checks")
    try:
        f = h5py.File(h5_path, "r")
    except Exception as exc:  # damaged superblock / truncated file
        report.damage.append(Damage((0, size), None, f"HDF5 file cannot be opened ({exc})", "all episodes",
                                    file=str(h5_path)))
        return EpisodeDataset(root, episodes, obs_space, act_space, rr, report)
    with f:
        names = sorted((k for k in f.keys() if k.startswith("episode_")), key=lambda k: int(k.split("_")[1]))
        for name in names:
            try:
                arrays = _read_h5_episode(f, name)
                ep = _episode_from_arrays(arrays, {k: v for k, v in f[name].attrs.items()})
            except Exception as exc:  # any HDF5 decoding error of a damaged group: report and go on
                report.episodes.append(EpisodeReport(name, 0, False, [f"unreadable: {exc.__class__.__name__}: {exc}"]))
                continue
            t = np.asarray(ep.time_s, dtype=np.float64)
            keep(name, ep, (float(t[0]), float(t[-1])) if t.size else None, None)
    return EpisodeDataset(root, episodes, obs_space, act_space, rr, report)


def load_training_dataset(path: str | Path) -> EpisodeDataset:
    """``load_dataset`` for a learner: prints what was dropped (if anything) and raises ``ValueError`` naming the
    path when no usable episode is left.
    """
    dataset = load_dataset(path)
    if dataset.report.n_dropped or dataset.report.damage:
        print(dataset.report.describe())
    if not dataset.episodes:
        raise ValueError(f"dataset {path} has no usable episodes:\n{dataset.report.describe()}")
    return dataset


# --------------------------------------------------------------------------- recording from an env


def record_episode(env, act, *, seed: int | None = None, max_steps: int | None = None) -> Episode:
    """Run one episode of a robot_rl env and record it (with joint states for bag export).

    Args:
        env: a ``robot_rl.envs.make`` env (``env.unwrapped`` has ``measured_joints``, ``control_dt``).
        act: ``act(obs, rng) -> action`` in [-1, 1], shape ``(n_act,)``; ``rng`` is the episode's generator.
        seed: reset seed (also seeds ``rng``), stored in the episode metadata.
        max_steps: stop (truncate) after this many steps even if the env has not.

    """
    u = env.unwrapped
    rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    obs_l, act_l, rew_l, term_l, trunc_l = [obs], [], [], [], []
    q, qd = u.measured_joints()
    has_success = "is_success" in info
    qs, qds, succ = [q.copy()], [qd.copy()], [bool(info.get("is_success", False))]
    physics_error = False
    while True:
        a = np.clip(np.asarray(act(obs, rng), dtype=np.float32), -1.0, 1.0)
        obs, r, term, trunc, info = env.step(a)
        physics_error |= bool(info.get("physics_error", False))
        if max_steps is not None and len(act_l) + 1 >= max_steps:
            trunc = True
        q, qd = u.measured_joints()
        obs_l.append(obs)
        act_l.append(a)
        rew_l.append(float(r))
        term_l.append(bool(term))
        trunc_l.append(bool(trunc) and not term)
        qs.append(q.copy())
        qds.append(qd.copy())
        succ.append(bool(info.get("is_success", False)))
        if term or trunc:
            break
    if isinstance(obs_l[0], dict):
        observations = {k: np.stack([o[k] for o in obs_l]).astype(np.float32) for k in obs_l[0]}
    else:
        observations = np.stack(obs_l).astype(np.float32)
    n = len(act_l)
    infos = {"joint_positions": np.stack(qs), "joint_velocities": np.stack(qds)}
    if has_success:
        infos["is_success"] = np.asarray(succ)
    return Episode(observations, np.stack(act_l), np.asarray(rew_l), np.asarray(term_l), np.asarray(trunc_l),
                   np.arange(n + 1) * float(u.control_dt), infos,
                   {"seed": seed, "randomization": _jsonable(info.get("randomization", {})),
                    "physics_error": physics_error})
