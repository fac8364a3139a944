"""Run a transfer comparison: per model and sample seed, the nominal model and the reality sample in the Python env
(ONNX policy in the loop), and the reality sample through the ROS 2 loop (launch/sim_policy.launch.yaml), read back
from the recorded bag.

The Python env and sim_robot build the same sample: both call ``make(env_id, randomization=..., seed=s)`` and start
from the state of that seeded reset. A ROS run's return is sim_robot's own (``/sim_robot/reward``: the task reward of
the true state, per control step since the first command) over the Python episode's length for that sample, so the
two returns cover the same number of control steps.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class TransferError(RuntimeError):
    """A model or setting the transfer report cannot run; the message says which and why."""


@dataclass
class TransferSettings:
    models: tuple[Path, ...]
    """Exported policy directories (policy.onnx + policy.json); the first is the model under test, the others run on
    the same samples beside it (e.g. the same recipe trained without randomization)."""
    labels: tuple[str, ...] = ()
    """Names in the report (default: each directory's name)."""
    samples: int = 20
    """Reality samples (seeds ``seed .. seed + samples - 1``)."""
    seed: int = 0
    """First sample seed."""
    randomization: str = "reality"
    """The held-out randomization profile the samples are drawn from (sim/randomization/<name>.yaml)."""
    ros: bool = True
    """Also run every sample through the ROS 2 loop (False: the Python env only)."""
    duration_s: float | None = None
    """Length of each ROS run [s] (default: the episode length plus 5 s for start-up)."""
    trigger: str = "sensor"
    """policy_node's trigger (``sensor`` or ``timer``)."""
    out_dir: Path = Path("runs/transfer")
    progress: bool = True
    env_id: str | None = None
    """Task env (default: the one each model was trained on, from its policy.json)."""
    monitor: bool = False
    """Run policy_node with each model's dynamics monitor (``<model>/monitor``, ``robot-rl monitor``) in the ROS
    loop, acting as it would on the robot (the alarm latches the e-stop); alarms are counted."""

    def __post_init__(self):
        self.models = tuple(Path(m) for m in self.models)
        if not self.models:
            raise TransferError("no model given")
        if self.samples < 1:
            raise TransferError(f"--samples must be >= 1, got {self.samples}")
        if self.labels and len(self.labels) != len(self.models):
            raise TransferError(f"{len(self.labels)} labels for {len(self.models)} models")
        labels = self.labels or tuple(m.name for m in self.models)
        if len(set(labels)) != len(labels):
            raise TransferError(f"model labels must differ (give --label for each): {list(labels)}")
        self.labels = tuple(labels)
        if self.trigger not in ("sensor", "timer"):
            raise TransferError(f"trigger must be sensor or timer, got {self.trigger!r}")
        if self.duration_s is not None and self.duration_s <= 2.0:
            raise TransferError(f"--duration must be > 2 s, got {self.duration_s}")


@dataclass
class ModelUnderTest:
    label: str
    model_dir: Path
    env_id: str
    sidecar: dict
    profile: object
    center: np.ndarray
    half: np.ndarray
    policy: object = field(repr=False, default=None)


def load_model(model_dir: Path, label: str, env_id: str | None) -> ModelUnderTest:
    """The exported policy, checked for what the transfer report supports (single-env tasks without goals whose
    actions map linearly onto absolute commands).
    """
    from robot_rl.core.profile import load_profile
    from robot_rl.envs import is_batched
    from robot_rl.export.runtime import ArtifactError, OnnxPolicy, read_sidecar

    json_path = model_dir / "policy.json"
    if not json_path.is_file():
        raise TransferError(f"{model_dir}: no policy.json (export a run first: robot-rl export RUN --out DIR)")
    try:
        sc = read_sidecar(json_path, "robot_rl.policy/1")
    except ArtifactError as exc:
        raise TransferError(str(exc)) from None
    env_id = env_id or sc.get("env_id")
    if not env_id:
        raise TransferError(f"{json_path}: no env_id recorded; give --env")
    if is_batched(env_id):
        raise TransferError(f"{env_id}: legged velocity-tracking tasks are not covered by robot-rl transfer yet; use "
                            f"robot-rl evaluate --tracking and robot-rl demo --robot go2")
    act = sc.get("action", {})
    if act.get("reference") is not None:
        raise TransferError(f"{json_path}: delta-target policies (action.reference {act['reference']!r}) are not "
                            f"covered by robot-rl transfer yet")
    profile = load_profile(sc["robot"]["profile"])
    try:
        policy = OnnxPolicy.load(model_dir, profile)
    except ArtifactError as exc:
        raise TransferError(str(exc)) from None
    return ModelUnderTest(label, model_dir, env_id, sc, profile, np.asarray(act["center"], dtype=np.float64),
                          np.asarray(act["half_range"], dtype=np.float64), policy)


def _limits(profile, joints) -> tuple[np.ndarray, np.ndarray]:
    spec = {j.name: j for j in profile.joints}
    return (np.array([spec[j].position_min for j in joints]), np.array([spec[j].position_max for j in joints]))


def python_episode(m: ModelUnderTest, seed: int, randomization: str | None) -> dict:
    """One episode of the ONNX policy in the Python env on the sample of ``seed`` (``randomization`` None: the
    nominal model from the same initial state).
    """
    from robot_rl.envs import make

    env = make(m.env_id, randomization=randomization, seed=seed)
    try:
        u = env.unwrapped
        if getattr(u.task, "goal_dim", 0):
            raise TransferError(f"{m.env_id}: goal-conditioned tasks are not covered by robot-rl transfer yet")
        obs, info = env.reset(seed=seed)
        joints = list(m.profile.joint_names)
        qadr = np.array([u.model.jnt_qposadr[u.model.joint(j).id] for j in joints])
        lo, hi = _limits(m.profile, joints)
        total, length, terminated, physics_error, limit_hit = 0.0, 0, False, False, False
        sample = {k: float(v) for k, v in (info.get("randomization") or {}).items()
                  if isinstance(v, (int, float, np.floating, np.integer))}
        while True:
            command = m.policy(np.asarray(obs, dtype=np.float32))
            action = np.clip((command - m.center) / m.half, -1.0, 1.0).astype(np.float32)
            obs, reward, term, trunc, info = env.step(action)
            total += float(reward)
            length += 1
            q = u.data.qpos[qadr]
            limit_hit |= bool(np.any(q < lo) or np.any(q > hi))
            physics_error |= bool(info.get("physics_error", False))
            if term or trunc:
                terminated = bool(term)
                break
    finally:
        env.close()
    return {"seed": seed, "return": total, "length": length, "terminated": terminated, "limit_hit": limit_hit,
            "physics_error": physics_error, "sample": sample}


def ros_episode(m: ModelUnderTest, seed: int, randomization: str, steps: int, duration_s: float, out_dir: Path,
                trigger: str, monitor: bool = False) -> dict:
    """The sample of ``seed`` through the ROS 2 loop for ``duration_s``; returns, failures, latency and agreement
    over the first ``steps`` control steps, read from the bag.
    """
    from robot_rl.core.assets import find_asset
    from robot_rl.deploy.launch_file import load_launch
    from robot_rl.deploy.launch_runner import run_launch

    run = out_dir / "ros" / m.label / f"seed_{seed}"
    if run.exists():
        shutil.rmtree(run)
    run.mkdir(parents=True)
    bag = run / "bag"
    args = {"model": str(m.model_dir.resolve()), "robot": m.profile.name, "env_id": m.env_id,
            "randomization": randomization, "seed": str(seed), "bag": str(bag.resolve()),
            "state_dir": str((run / "state").resolve()), "trigger": trigger,
            "monitor": str((m.model_dir / "monitor").resolve()) if monitor else "none"}
    desc = load_launch(find_asset("launch/sim_policy.launch.yaml"), args)
    with open(run / "launch.log", "w") as log:
        rc = run_launch(desc, duration_s=duration_s, out=log)
    row = {"seed": seed, "rc": rc, "bag": str(bag)}
    if not bag.exists():
        return {**row, "error": f"no bag written (launch exit code {rc}, log {run / 'launch.log'})"}
    row.update(read_ros_run(m, bag, steps))
    return row


def read_ros_run(m: ModelUnderTest, bag: Path, steps: int) -> dict:
    """Return, failures, latency and ONNX agreement of a recorded sim_policy run over its first ``steps`` steps."""
    from robot_rl.data.bags import read_bag
    from robot_rl.data.run_metrics import bag_metrics, decoded, level

    raw = read_bag(bag)

    def msgs(topic):
        return decoded(raw, topic)

    rewards = [(t, np.asarray(msg.data, dtype=np.float64)) for t, msg in msgs("/sim_robot/reward")]
    rewards = [(t, d) for t, d in rewards if len(d) >= 5 and np.isfinite(d[4])]
    if not rewards:
        return {"error": f"{bag}: no /sim_robot/reward messages with a step count"}
    within = [(t, d) for t, d in rewards if d[4] <= steps]
    t_end, last = within[-1] if within else rewards[0]
    started = [t for t, d in rewards if d[4] >= 1]
    t_start = started[0] if started else t_end
    joints = list(m.profile.joint_names)
    lo, hi = _limits(m.profile, joints)
    limit_hit = False
    for t, js in msgs(m.profile.topics.joint_states):
        if t_start <= t <= t_end and len(js.position) == len(js.name):
            pos = dict(zip(js.name, js.position))
            q = np.array([pos.get(j, np.nan) for j in joints])
            limit_hit |= bool(np.any(q < lo) or np.any(q > hi))
    bm = bag_metrics(raw, m.profile.topics.commands)
    monitor = [st for _t, msg in msgs(m.profile.topics.diagnostics) for st in msg.status
               if st.name.endswith("dynamics monitor")]
    levels = [level(st) for st in monitor]
    return {"return": float(last[1]), "steps": int(last[4]), "short": int(last[4]) < steps,
            "timeouts": int(last[3]), "limit_hit": limit_hit, "safe_commands": bm["safe_commands"],
            "diagnostics_errors": bm["diagnostics_errors"], "nonfinite_commands": bm["nonfinite_commands"],
            "latency_p50_ms": bm["latency_p50_ms"], "latency_p99_ms": bm["latency_p99_ms"],
            "command_rate_hz": bm["command_rate_hz"], "damage": bm["damage"],
            "monitor_alarm": bool(levels) and max(levels) > 0 if monitor else None, **_agreement(m, raw)}


def _agreement(m: ModelUnderTest, raw) -> dict:
    """Three-way parity on the recorded stream: every command policy_node sent is matched (through its ``~/timing``
    message: the header stamp of the joint state it was computed from) to that joint-state message, the observation
    is rebuilt with the task's builder and the ONNX policy run on it. Commands the safety filter passed must equal the
    policy's output (``agreement_max``; torch vs ONNX is the export's parity check); the others are counted:
    fallbacks (``safe``) and commands the filter clamped or rate-limited (``changed``). Commands without a matching
    joint state in the bag are counted as ``unmatched``.
    """
    from robot_rl.data.bags import decode_joint_states
    from robot_rl.data.checks import LoadReport
    from robot_rl.data.run_metrics import decoded
    from robot_rl.envs import observation_builder

    def msgs(topic):
        return [msg for _t, msg in decoded(raw, topic)]

    names = list(m.profile.joint_names)
    _log, stamp_ns, q, qd, _eff = decode_joint_states(raw, m.profile.topics.joint_states, names, LoadReport("bag"), [])
    stamps = np.asarray(stamp_ns, dtype=np.int64)
    order = np.argsort(stamps)
    stamps = stamps[order] / 1e9
    commands = [np.asarray(c.data, dtype=np.float64) for c in msgs(m.profile.topics.commands)]
    timing = [np.asarray(t.data, dtype=np.float64) for t in msgs("/policy_node/timing")]
    builder = observation_builder(m.env_id)
    passed, fallbacks, changed, unmatched, worst = 0, 0, 0, 0, 0.0
    for cmd, tm in zip(commands, timing):
        if tm[4]:
            fallbacks += 1
            continue
        if len(tm) > 5 and tm[5]:  # clamped or rate-limited by the filter
            changed += 1
            continue
        j = int(np.clip(np.searchsorted(stamps, tm[1]), 0, max(len(stamps) - 1, 0)))
        near = [k for k in (j - 1, j) if 0 <= k < len(stamps) and abs(stamps[k] - tm[1]) < 1e-6]
        if not near:
            unmatched += 1
            continue
        k = order[near[0]]
        pred = np.asarray(m.policy(builder.build(q[k], qd[k])), dtype=np.float64).reshape(-1)
        worst = max(worst, float(np.abs(pred - cmd).max()))
        passed += 1
    return {"agreement_commands": passed, "agreement_max": worst if passed else math.nan,
            "safety_fallback_commands": fallbacks, "safety_changed_commands": changed,
            "unmatched_commands": unmatched + abs(len(commands) - len(timing))}


def run_transfer(s: TransferSettings) -> dict:
    """Every model on every sample: nominal and reality in the Python env, reality through ROS (``s.ros``).
    Returns ``{"settings": ..., "models": [{"label", "model_dir", "env_id", "nominal", "python", "ros"}]}``, rows
    per sample in seed order.
    """
    from tqdm import tqdm

    models = [load_model(p, label, s.env_id) for p, label in zip(s.models, s.labels)]
    if s.monitor and s.ros:
        missing = [str(m.model_dir) for m in models if not (m.model_dir / "monitor" / "monitor.json").is_file()]
        if missing:
            raise TransferError(f"--monitor: no dynamics monitor in {missing} (make one: robot-rl monitor MODEL)")
    envs = {m.env_id for m in models}
    if len(envs) > 1:
        raise TransferError(f"the models were trained on different tasks {sorted(envs)}: give --env")
    seeds = [s.seed + i for i in range(s.samples)]
    s.out_dir.mkdir(parents=True, exist_ok=True)
    results = {"settings": {"samples": s.samples, "seeds": seeds, "randomization": s.randomization, "ros": s.ros,
                            "trigger": s.trigger, "env_id": models[0].env_id, "profile": models[0].profile.name,
                            "monitor": s.monitor and s.ros},
               "models": []}
    per_sample = 2 + (1 if s.ros else 0)
    with tqdm(total=len(models) * len(seeds) * per_sample, desc="transfer", unit="run", disable=not s.progress,
              dynamic_ncols=True) as bar:
        for m in models:
            entry = {"label": m.label, "model_dir": str(m.model_dir), "env_id": m.env_id,
                     "parity": (m.sidecar.get("checks") or {}).get("parity", {}), "nominal": [], "python": [],
                     "ros": []}
            for seed in seeds:
                bar.set_postfix_str(f"{m.label} seed {seed}: Python")
                entry["nominal"].append(python_episode(m, seed, None))
                bar.update()
                py = python_episode(m, seed, s.randomization)
                entry["python"].append(py)
                bar.update()
                if s.ros:
                    bar.set_postfix_str(f"{m.label} seed {seed}: ROS 2 loop")
                    duration = s.duration_s or py["length"] * float(m.sidecar["control_period_s"]) + 5.0
                    entry["ros"].append(ros_episode(m, seed, s.randomization, py["length"], duration, s.out_dir,
                                                    s.trigger, s.monitor))
                    bar.update()
            results["models"].append(entry)
    return results
