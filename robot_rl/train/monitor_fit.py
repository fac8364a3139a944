"""Train and calibrate the dynamics monitor of an exported policy (``robot-rl monitor``; the monitor itself is
:class:`robot_rl.export.monitor.DynamicsMonitor`).

1. Data: the policy's own closed loop, as the robot will run it: sim_robot's plant (``SimPlant`` + ``EnvReality``:
   sensor noise and bias, latency, the sample's physics) under the policy's training randomization, the observation
   built from the measured joint state with the task's builder, the ONNX policy's command. Transitions are
   (measured joint state, command) -> next measured joint state, one per control period.
2. Model: a probabilistic ensemble of Gaussian delta models (``robot_rl.algos.pets_model``, hinge joints without
   limits as angles), trained with held-out early stopping, exported as ``dynamics.onnx`` + ``dynamics.json``.
3. Calibration: the monitor runs on fresh in-distribution episodes; the threshold is ``margin`` x the largest
   windowed score seen (``monitor.json``, with the per-episode peaks).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

TRAIN_SEED_START = 500_000_000
"""Env seeds of the monitor's training episodes (disjoint from training < 1e9 evaluation and held-out reality
samples, which start at 0)."""
CALIBRATION_SEED_START = 600_000_000


@dataclass
class MonitorSettings:
    episodes: int = 40
    """Closed-loop episodes of training data (one control period per transition)."""
    calibration: int = 40
    """Fresh in-distribution episodes the threshold is calibrated on."""
    randomization: str | None = None
    """Randomization of both (default: the policy's training randomization from policy.json; 'none' = off)."""
    window: int = 25
    """Control periods averaged into the score (25 at 50 Hz: 0.5 s)."""
    reduce: str = "max"
    """Per-dimension scores of a transition -> one number: ``max`` (the most surprised dimension) or ``mean``. On the
    cart-pole swing-up, ``max`` caught 36 of 42 failures in time against ``mean``'s 25, both with 0 false alarms in 80
    in-distribution runs (bench/results/monitor.md)."""
    margin: float = 1.3
    """Threshold = margin x the largest windowed score of the calibration episodes."""
    members: int = 5
    hidden: tuple[int, ...] = (128, 128)
    epochs: int = 60
    """At most this many epochs (early stopping on 10 % held-out transitions, patience 5)."""
    seed: int = 0
    progress: bool = True


def plant_episode(policy, env_id: str, randomization, seed: int, steps: int | None = None, monitor=None) -> dict:
    """One episode of ``policy`` (robot units, e.g. ``OnnxPolicy``) on sim_robot's plant with the sample of
    ``seed``: per control period the measured joint state ``q``, ``qd``, the command, the true joint positions,
    the reward; with ``monitor`` (a ``DynamicsMonitor``) also its windowed score. ``steps``: default the env's
    episode length.
    """
    from robot_rl.deploy.sim_plant import EnvReality, SimPlant
    from robot_rl.envs import make

    env = make(env_id, randomization=randomization, seed=seed)
    try:
        base = env.unwrapped
        profile, builder = base.profile, base.observation_builder
        reality = EnvReality(env, base.np_random)
        plant = SimPlant(profile, base.model, base.data, reality=reality, rng=np.random.default_rng([seed, 7]),
                         command_timeout_s=1.0)
        plant.latency_s += reality.action_latency_s  # as sim_robot does
        n = int(steps or base.max_episode_steps)
        dt = float(profile.control_period_s)
        qadr = np.array([base.model.jnt_qposadr[base.model.joint(j).id] for j in profile.joint_names])
        nj, nc = len(profile.joint_names), len(profile.command_joints)
        out = {"q": np.zeros((n + 1, nj)), "qd": np.zeros((n + 1, nj)), "command": np.zeros((n, nc)),
               "q_true": np.zeros((n + 1, nj)), "reward": np.zeros(n), "score": np.full(n, math.nan),
               "sample": dict(reality.sample), "dt": dt}
        t = 0.0
        for k in range(n + 1):
            q, qd, _ = plant.measure()
            out["q"][k], out["qd"][k], out["q_true"][k] = q, qd, base.data.qpos[qadr]
            if k == n:
                break
            cmd = np.asarray(policy(builder.build(q, qd)), dtype=np.float64)
            out["command"][k] = cmd
            if monitor is not None:
                out["score"][k] = monitor.update(q, qd, t, cmd)
            plant.on_command(cmd, t)
            plant.advance(t + dt - 1e-9)
            out["reward"][k] = reality.reward
            t += dt
    finally:
        env.close()
    return out


def angle_indices(model, profile) -> list[int]:
    """Monitor-state indices of the unlimited hinge joints (their positions are angles: wrapped deltas)."""
    import mujoco

    out = []
    for i, name in enumerate(profile.joint_names):
        j = model.joint(name).id
        if model.jnt_type[j] == mujoco.mjtJoint.mjJNT_HINGE and not model.jnt_limited[j]:
            out.append(i)
    return out


def transitions(episodes: list[dict], angles: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x, u, x_next)`` of the episodes, angle positions of ``x_next`` unwrapped to be continuous with ``x``."""
    xs, us, xn = [], [], []
    for ep in episodes:
        x = np.hstack([ep["q"], ep["qd"]])
        xs.append(x[:-1])
        xn.append(x[1:].copy())
        us.append(ep["command"])
    x, u, x_next = (np.concatenate(v) for v in (xs, us, xn))
    d = x_next[:, angles] - x[:, angles]
    x_next[:, angles] = x[:, angles] + np.arctan2(np.sin(d), np.cos(d))
    return x, u, x_next


def fit_monitor(model_dir: str | Path, out_dir: str | Path, s: MonitorSettings) -> dict:
    """Collect, train, export and calibrate (module docstring); returns the written ``monitor.json`` content."""
    from tqdm import tqdm

    from robot_rl.core.profile import load_profile
    from robot_rl.envs import make
    from robot_rl.export.monitor import MONITOR_FILE, MONITOR_FORMAT, REDUCTIONS, DynamicsMonitor, state_names
    from robot_rl.export.onnx import export_ensemble, write_atomic
    from robot_rl.export.runtime import OnnxPolicy, action_units, read_sidecar
    from robot_rl.train.pets_artifact import StateUnits

    if s.reduce not in REDUCTIONS:
        raise ValueError(f"reduce {s.reduce!r} is not one of {sorted(REDUCTIONS)}")
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    sc = read_sidecar(model_dir / "policy.json", "robot_rl.policy/1")
    env_id = sc.get("env_id")
    if not env_id:
        raise ValueError(f"{model_dir / 'policy.json'}: no env_id recorded")
    profile = load_profile(sc["robot"]["profile"])
    policy = OnnxPolicy.load(model_dir, profile)
    rz = _randomization(s.randomization, sc)
    env = make(env_id)
    angles = angle_indices(env.unwrapped.model, profile)
    dt = float(profile.control_period_s)
    env.close()
    torch.manual_seed(s.seed)
    with tqdm(total=s.episodes + s.calibration, desc="monitor", unit="episode", disable=not s.progress,
              dynamic_ncols=True) as bar:
        bar.set_postfix_str("closed-loop data")
        episodes = []
        for i in range(s.episodes):
            episodes.append(plant_episode(policy, env_id, rz, TRAIN_SEED_START + s.seed * 10_000 + i))
            bar.update()
        x, u, x_next = transitions(episodes, angles)
        bar.set_postfix_str(f"fitting the ensemble on {len(x)} transitions")
        model, nrmse = _fit_ensemble(x, u, x_next, angles, s)
        names = state_names(profile.joint_names)
        n_par = min(len(x), 2000)
        export_ensemble(StateUnits(model), out_dir, state_names=names, action_names=list(profile.command_joints),
                        parity_inputs=(x[:n_par], u[:n_par]), target="delta",
                        action_units_=",".join(action_units(profile)),
                        profile=profile, env_id=env_id, algo="monitor", config=asdict(s), name=out_dir.name,
                        metrics={"train_nrmse": dict(zip(names, nrmse.tolist())), "transitions": int(len(x))},
                        control_dt=dt)
        meta = {"format": MONITOR_FORMAT, "threshold": 1e300, "window": s.window, "control_period_s": dt,
                "angle_indices": angles, "reduce": s.reduce,
                "statistic": f"mean over the window of {s.reduce}_d (dx_d - mu_d)^2 / var_d",
                "policy": {"dir": str(model_dir), "sha256": sc["model"]["sha256"]}, "env_id": env_id,
                "randomization": rz or "none"}
        write_atomic(out_dir / MONITOR_FILE, (json.dumps(meta, indent=2) + "\n").encode())
        bar.set_postfix_str("calibrating")
        peaks = []
        for i in range(s.calibration):
            mon = DynamicsMonitor(out_dir, profile)
            plant_episode(policy, env_id, rz, CALIBRATION_SEED_START + s.seed * 10_000 + i, monitor=mon)
            peaks.append(mon.peak)
            bar.update()
    peaks = np.asarray(peaks)
    meta["threshold"] = float(s.margin * peaks.max())
    meta["calibration"] = {"episodes": s.calibration, "seed_start": CALIBRATION_SEED_START + s.seed * 10_000,
                           "peak_p50": float(np.median(peaks)), "peak_p95": float(np.percentile(peaks, 95)),
                           "peak_max": float(peaks.max()), "margin": s.margin}
    meta["training"] = {"episodes": s.episodes, "transitions": int(len(x)),
                        "seed_start": TRAIN_SEED_START + s.seed * 10_000, "nrmse": dict(zip(names, nrmse.tolist()))}
    write_atomic(out_dir / MONITOR_FILE, (json.dumps(meta, indent=2) + "\n").encode())
    return meta


def _randomization(setting: str | None, sidecar: dict) -> str | None:
    """The randomization of the monitor's episodes: ``setting``, by default the policy's training randomization from
    its sidecar; None for off (``none`` or empty).
    """
    rz = setting
    if rz is None:
        rz = ((sidecar.get("training") or {}).get("config") or {}).get("env", {}).get("randomization")
    return None if rz in (None, "none", "") else rz


def _fit_ensemble(x: np.ndarray, u: np.ndarray, x_next: np.ndarray, angles: list[int], s: MonitorSettings):
    """``(model, nrmse)``: the ensemble fitted on the transitions (``StateUnits``: inputs and outputs in state units)
    and the normalized RMSE of its mean predicted delta per state dimension on them.
    """
    from robot_rl.algos.pets_config import PetsConfig
    from robot_rl.algos.pets_model import ProbabilisticEnsemble, fit_epochs
    from robot_rl.train.pets_artifact import StateUnits

    cfg = PetsConfig(hidden=tuple(s.hidden), train_epochs=s.epochs, batch_size=256, n_members=s.members)
    model = ProbabilisticEnsemble(x.shape[1], u.shape[1], angles, s.members, tuple(s.hidden), "silu")
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    X, U, Xn = (torch.as_tensor(v, dtype=torch.float32) for v in (x, u, x_next))
    model.fit_normalizers(X, U, Xn)
    fit_epochs(model, X, U, Xn, cfg, opt, torch.Generator().manual_seed(s.seed))
    model.eval()
    with torch.no_grad():
        mean, _ = StateUnits(model)(X, U)
    pred = mean.numpy().astype(np.float64).mean(axis=0)
    nrmse = np.sqrt(np.mean((pred - (x_next - x)) ** 2, axis=0)) / np.sqrt(np.mean((x_next - x) ** 2, axis=0))
    return model, nrmse
