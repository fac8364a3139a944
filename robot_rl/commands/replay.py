"""Replay a logged run (rosbag2 bag or episode dataset): damage report, import, policy agreement, sim-to-real gap.

  robot-rl replay BAG --env robot_rl/ArmReach-v0 [--import-to DATASET_DIR]        import (report printed)
  robot-rl replay BAG_OR_DATASET --policy RUN_DIR [--out DIR]                     action agreement (open loop)
  robot-rl replay BAG_OR_DATASET --resim [--out DIR]                              sim-to-real gap report
  robot-rl replay BAG_OR_DATASET --video out.mp4 [--resim]                        logged vs re-simulated video

``--policy`` feeds every logged observation to the policy (open loop) and compares its action with the logged
one per step: RMSE and mean absolute error per action dimension, share of steps within ``--tolerance``, a plot over
time. ``--resim`` puts MuJoCo in each logged state (joint positions and velocities), applies the logged command for
one control period and compares the prediction with the logged next state: per-joint position / velocity RMSE and
the latency estimated by cross-correlating each command with the joint's acceleration (logged minus simulated lag).
``--video`` renders the logged run (left) next to an open-loop re-simulation from its first logged state driven by
the logged commands (right), one frame per control step (robot_rl.viz.run_videos); without a headless GL backend it
prints the install hint and does the rest. Reports are Markdown + PNG in ``--out``.

Legged robots (a bag from the Go2 joystick task): the import rebuilds the walking policy's observation from
/joint_states, /imu and the policy node's velocity command (``robot_rl.data.legged_bags``); the base is not
measured, so ``--resim`` (with ``--policy``) walks the logged command sequence with the policy in the nominal
simulation and compares what both runs measure (``robot_rl.data.legged_gap``). Damage in the input is
reported, never a traceback (docs/replay.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from robot_rl.data.legged_gap import xcorr_lag  # noqa: F401  (also this module's API)

HELP = "replay a bag or dataset: damage report, import, policy action agreement, sim-to-real gap (--resim)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", type=Path, help="rosbag2 directory / .mcap file, or an episode dataset directory")
    p.add_argument("--env", default=None, help="env id (default: the dataset's env_id; required for bags)")
    p.add_argument("--policy", default=None, help="run directory or checkpoint (robot_rl.train.load_policy), or an "
                   "exported model directory with policy.onnx (robot_rl.export.runtime.OnnxPolicy)")
    p.add_argument("--resim", action="store_true", help="one-step re-simulation from logged states: gap report")
    p.add_argument("--out", type=Path, default=None, help="report directory (default replay_<source name>)")
    p.add_argument("--import-to", type=Path, default=None, help="write the imported episodes as a dataset here")
    p.add_argument("--control-period", type=float, default=None, help="resampling period [s] (default: env's)")
    p.add_argument("--lookahead", type=float, default=None, help="command zero-order-hold lookahead [s]")
    p.add_argument("--max-gap", type=float, default=None, help="split episodes at silences longer than this [s]")
    p.add_argument("--split", choices=("gap", "goal"), default="goal", help="episode split rule for bags")
    p.add_argument("--stamp", choices=("header", "log"), default="header", help="joint-state time source")
    p.add_argument("--video", type=Path, default=None, help="write logged vs open-loop re-simulated video (.mp4/.gif)")
    p.add_argument("--video-size", type=int, nargs=2, default=(240, 320), metavar=("H", "W"),
                   help="height and width of each half of the video [px] (default 240 320)")
    p.add_argument("--tolerance", type=float, default=0.1, help="agreement tolerance (normalized action units)")


def load_source(args):
    """(env, episodes, report) from a dataset directory or a bag."""
    from robot_rl.data.dataset import load_dataset
    from robot_rl.envs import make

    src = args.source
    if (src / "data" / "main_data.hdf5").exists() or (src / "main_data.hdf5").exists():
        ds = load_dataset(src)
        env_id = args.env or ds.metadata.get("env_id")
        if not env_id:
            raise ValueError(f"{src}: dataset metadata has no env_id; pass --env")
        return make(env_id), ds.episodes, ds.report
    if args.env is None:
        raise ValueError(f"{src} is a bag: pass --env so its joint states can be turned into observations")
    from robot_rl.data.bags import ImportSettings, import_bag

    env = make(args.env)
    settings = ImportSettings(control_period_s=args.control_period or env.unwrapped.control_dt,
                              command_lookahead_s=args.lookahead, max_gap_s=args.max_gap, split=args.split,
                              stamp=args.stamp)
    from robot_rl.data.legged_bags import import_legged_bag, is_legged

    episodes, report = (import_legged_bag if is_legged(env) else import_bag)(src, env, settings)
    return env, episodes, report


# --------------------------------------------------------------------------- policy agreement


def torch_policy(module):
    """``(B, n_obs) float32 -> (B, n_act)`` normalized actions from a ``load_policy`` module."""
    import torch

    def act(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.as_tensor(obs)).numpy().astype(np.float64)

    return act


def onnx_policy(model_dir: Path, env):
    """Normalized actions from an exported artifact (``policy.onnx`` + ``policy.json``, robot command units inside),
    checked against the robot profile by ``robot_rl.export.runtime.OnnxPolicy`` (no torch). Position policies
    output joint targets: normalized with the env's action map (``robot_rl.data.bags.env_actions``), as the log
    import does.
    """
    from robot_rl.data.bags import env_actions
    from robot_rl.export.runtime import OnnxPolicy

    policy = OnnxPolicy(model_dir, env.unwrapped.profile)
    return lambda obs: env_actions(env, np.stack([policy(o) for o in obs]), obs)


def action_agreement(policy, episodes, tolerance: float) -> dict:
    """Per-step policy actions on logged observations vs logged actions (normalized units).

    ``policy``: ``(B, n_obs) float32 -> (B, n_act)`` (``torch_policy`` / ``onnx_policy``). Returns ``{"rmse":
    (n_act,), "mae": (n_act,), "within": share of steps with max |diff| <= tolerance, "filter_changed": steps left
    out, "per_episode": [(policy actions (T, n_act), logged actions (T, n_act))]}``. Steps whose logged action (or the
    last action the policy saw) the safety filter changed (a legged import's ``filter_changed`` info) are left out of
    the statistics: there the logged action is not the policy's by design.
    """
    from robot_rl.data.relabel import flat_observations

    pairs, diffs, skipped = [], [], 0
    for ep in episodes:
        obs = flat_observations(ep.observations)[:-1]
        pair = (np.asarray(policy(obs), dtype=np.float64), np.asarray(ep.actions, dtype=np.float64))
        pairs.append(pair)
        keep = ~np.asarray(ep.infos.get("filter_changed", np.zeros(len(obs) + 1, bool)), dtype=bool)[:-1]
        skipped += int((~keep).sum())
        diffs.append((pair[0] - pair[1])[keep])
    diff = np.concatenate(diffs)
    return {"rmse": np.sqrt((diff ** 2).mean(0)), "mae": np.abs(diff).mean(0),
            "within": float((np.abs(diff).max(1) <= tolerance).mean()), "filter_changed": skipped,
            "per_episode": pairs}


# --------------------------------------------------------------------------- re-simulation


def legged_gap(env, episodes, policy, out: Path, title: str, qpos_out: list | None = None
               ) -> tuple[str, dict, dict]:
    """Legged robots (``robot_rl.data.legged_gap``): the logged run vs the policy walking the logged commands in
    the nominal simulation; writes gap_report.md into ``out``. Returns ``(markdown, logged stats, simulated
    stats)``; ``qpos_out`` (a list) receives the simulated runs' qpos (``simulate_like``).
    """
    from robot_rl.data import legged_gap as lg

    u = env.unwrapped
    center, half = u.action_map()
    standing = u.profile.standing_pose
    logged = [(e.observations, e.actions, bool(e.terminations[-1])) for e in episodes]
    sims = lg.simulate_like(env, episodes, policy, qpos_out=qpos_out)
    stats = lg.gap_stats(logged, center, half, standing), lg.gap_stats(sims, center, half, standing)
    return lg.gap_report(env, *stats, logged, sims, out, title), *stats


def resimulate(env, episodes) -> list[dict]:
    """One-step predictions from every logged state: ``{"q_pred", "qd_pred", "q_log", "qd_log", "acc_sim"}``."""
    from robot_rl.data.bags import JointStateTask

    task = JointStateTask(env)
    u = env.unwrapped
    u.randomization_enabled = False  # nominal model: the gap report measures the sim as it is
    env.reset(seed=0)  # initializes the env's step bookkeeping; every step below starts from a logged state
    out = []
    for ep in episodes:
        q, qd = ep.infos["joint_positions"], ep.infos["joint_velocities"]
        goal = ep.observations["desired_goal"][0] if isinstance(ep.observations, dict) else None
        q_pred, qd_pred = np.empty_like(q[1:]), np.empty_like(qd[1:])
        for k in range(len(ep.actions)):
            task.set_state(q[k], qd[k], goal)
            env.step(ep.actions[k])
            q_pred[k], qd_pred[k] = u.measured_joints()
        dt = float(np.median(np.diff(ep.time_s)))
        out.append({"q_pred": q_pred, "qd_pred": qd_pred, "q_log": q[1:], "qd_log": qd[1:], "q0": q[:-1],
                    "qd0": qd[:-1], "actions": np.asarray(ep.actions), "dt": dt})
    return out


def gap_report(env, sims: list[dict], out: Path, title: str) -> str:
    """Write gap_report.md + PNGs into ``out``; returns the Markdown text."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    u = env.unwrapped
    names = list(u.profile.joint_names)
    dq = np.concatenate([s["q_pred"] - s["q_log"] for s in sims])
    dqd = np.concatenate([s["qd_pred"] - s["qd_log"] for s in sims])
    rmse_q, rmse_qd = np.sqrt((dq ** 2).mean(0)), np.sqrt((dqd ** 2).mean(0))
    dt = sims[0]["dt"]
    lines = [f"# Sim-to-real gap: {title}", "", f"{len(sims)} episode(s), {len(dq)} one-step predictions, control "
             f"period {dt * 1e3:.1f} ms; MuJoCo model {u.profile.mjcf} without randomization.", "",
             "| joint | position RMSE | velocity RMSE |", "|---|---|---|"]
    for n, a, b in zip(names, rmse_q, rmse_qd):
        unit = u.profile.joint(n).position_unit
        lines.append(f"| {n} | {a:.3g} {unit} | {b:.3g} {unit}/s |")
    lines += ["", "## Latency (cross-correlation of command with joint acceleration)", "",
              "| command joint | logged lag | simulated lag | estimated extra latency |", "|---|---|---|---|"]
    cidx = [names.index(c) for c in u.profile.command_joints]
    for j, (name, ji) in enumerate(zip(u.profile.command_joints, cidx)):
        cmd = np.concatenate([s["actions"][:, j] for s in sims])
        acc_log = np.concatenate([(s["qd_log"][:, ji] - s["qd0"][:, ji]) / s["dt"] for s in sims])
        acc_sim = np.concatenate([(s["qd_pred"][:, ji] - s["qd0"][:, ji]) / s["dt"] for s in sims])
        lag_log, lag_sim = xcorr_lag(cmd, acc_log, 10), xcorr_lag(cmd, acc_sim, 10)
        lines.append(f"| {name} | {lag_log} steps | {lag_sim} steps | {(lag_log - lag_sim) * dt * 1e3:.0f} ms |")
    s0 = sims[0]
    fig, axes = plt.subplots(len(names), 1, figsize=(8, 1.8 * len(names)), sharex=True, squeeze=False)
    t = np.arange(len(s0["q_log"])) * dt
    for i, ax in enumerate(axes[:, 0]):
        ax.plot(t, s0["q_log"][:, i], label="logged")
        ax.plot(t, s0["q_pred"][:, i], "--", label="sim one-step")
        ax.set_ylabel(names[i], fontsize=8)
    axes[0, 0].legend(fontsize=8)
    axes[-1, 0].set_xlabel("time [s]")
    fig.tight_layout()
    fig.savefig(out / "gap_positions.png", dpi=80)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar(names, rmse_qd)
    ax.set_ylabel("velocity RMSE")
    ax.tick_params(axis="x", labelsize=7, rotation=45)
    fig.tight_layout()
    fig.savefig(out / "gap_rmse.png", dpi=80)
    plt.close(fig)
    lines += ["", "![positions](gap_positions.png)", "", "![velocity RMSE](gap_rmse.png)", ""]
    text = "\n".join(lines)
    (out / "gap_report.md").write_text(text)
    return text


def agreement_report(result: dict, out: Path, title: str, tolerance: float) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pred, logged = result["per_episode"][0]
    n_act = logged.shape[1]
    fig, axes = plt.subplots(n_act, 1, figsize=(8, 1.6 * n_act + 1), sharex=True, squeeze=False)
    for i, ax in enumerate(axes[:, 0]):
        ax.plot(logged[:, i], label="logged")
        ax.plot(pred[:, i], "--", label="policy")
        ax.set_ylabel(f"a[{i}]", fontsize=8)
    axes[0, 0].legend(fontsize=8)
    axes[-1, 0].set_xlabel("step")
    fig.tight_layout()
    fig.savefig(out / "agreement.png", dpi=80)
    plt.close(fig)
    lines = [f"# Action agreement: {title}", "",
             f"{len(result['per_episode'])} episode(s); steps with every |policy - logged| <= {tolerance}: "
             f"{100 * result['within']:.1f} %" + (f" ({result['filter_changed']} step(s) whose command the safety "
                                                   "filter changed left out)" if result.get("filter_changed") else ""),
             "", "| action | RMSE | MAE |", "|---|---|---|"]
    lines += [f"| a[{i}] | {r:.3g} | {m:.3g} |" for i, (r, m) in enumerate(zip(result["rmse"], result["mae"]))]
    lines += ["", "![agreement](agreement.png)", ""]
    text = "\n".join(lines)
    (out / "agreement.md").write_text(text)
    return text


def _legged_video(env, episodes, args):
    """``--video`` of a legged robot: the longest episode beside the nominal sim walking its commands (``--policy``)."""
    from robot_rl.data.legged_gap import simulate_like
    from robot_rl.viz.run_videos import legged_replay_video

    if args.policy is None or not (Path(args.policy) / "policy.onnx").exists():
        raise ValueError("a legged robot's video needs --policy MODEL_DIR (an exported policy.onnx): the right half "
                         "is the nominal simulation walking the logged commands with it")
    ep = max(episodes, key=len)
    qpos: list = []
    simulate_like(env, [ep], onnx_policy(Path(args.policy), env), qpos_out=qpos)
    return legged_replay_video(env, ep, qpos[0], args.video, height=args.video_size[0], width=args.video_size[1])


def _video(env, episodes, args) -> int:
    """``--video``: 0 when written or rendering is unavailable (hint printed), 2 when the episodes lack joints."""
    from robot_rl.data.legged_bags import is_legged
    from robot_rl.viz.run_videos import replay_video
    from robot_rl.viz.video import RenderUnavailable

    try:
        if is_legged(env):
            out, n, fps = _legged_video(env, episodes, args)
        else:
            out, n, fps = replay_video(env, episodes, args.video, height=args.video_size[0],
                                       width=args.video_size[1])
    except ValueError as exc:
        print(f"robot-rl replay: --video: {exc}", file=sys.stderr)
        return 2
    except RenderUnavailable as exc:
        print(f"robot-rl replay: no video: {exc}", file=sys.stderr)
        return 0
    print(f"video: {out} ({n} frames at {fps:.1f} fps; left logged, right the simulation)")
    return 0


def run(args) -> int:
    try:
        env, episodes, report = load_source(args)
    except (ValueError, KeyError, FileNotFoundError) as exc:
        print(f"robot-rl replay: {exc}", file=sys.stderr)
        return 2
    print(report.describe())
    if not episodes:
        print("robot-rl replay: no intact episodes to replay", file=sys.stderr)
        return 1
    if args.import_to is not None:
        from robot_rl.data.dataset import DatasetWriter

        meta = {"env_id": env.spec.id if env.spec else args.env, "control_period_s": float(env.unwrapped.control_dt),
                "provenance": {"imported_from": str(args.source), "damage": [d.describe() for d in report.damage]}}
        name = args.source.name.replace(".", "_") or "bag"
        with DatasetWriter(args.import_to, dataset_id=f"robot_rl/{name}-import-v0",
                           observation_space=env.observation_space, action_space=env.action_space,
                           robot_rl_metadata=meta) as w:
            for ep in episodes:
                w.add(ep)
        print(f"wrote {len(episodes)} episode(s) to {args.import_to}")
    if args.video is not None:
        rc = _video(env, episodes, args)
        if rc:
            return rc
    if args.policy is None and not args.resim:
        return 0
    from robot_rl.data.legged_bags import is_legged

    out = args.out or Path(f"replay_{args.source.name}")
    out.mkdir(parents=True, exist_ok=True)
    if args.policy is not None:
        policy_path = Path(args.policy)
        if (policy_path / "policy.onnx").exists():
            from robot_rl.export.runtime import ArtifactError

            try:
                policy, label = onnx_policy(policy_path, env), f"ONNX policy {policy_path}"
            except ArtifactError as exc:
                print(f"robot-rl replay: {exc}", file=sys.stderr)
                return 2
        else:
            from robot_rl.train import CheckpointError, load_policy

            try:
                loaded = load_policy(policy_path)
            except CheckpointError as exc:
                print(f"robot-rl replay: {exc}", file=sys.stderr)
                return 2
            policy, label = torch_policy(loaded.module), f"{loaded.algo} policy {policy_path}"
        result = action_agreement(policy, episodes, args.tolerance)
        print(agreement_report(result, out, f"{label} on {args.source}", args.tolerance))
    if args.resim and is_legged(env):
        if args.policy is None:
            print("robot-rl replay: --resim of a legged robot needs --policy (the simulation walks the logged "
                  "commands with it)", file=sys.stderr)
            return 2
        print(legged_gap(env, episodes, policy, out, str(args.source))[0])
    elif args.resim:
        if any("joint_positions" not in e.infos for e in episodes):
            print("robot-rl replay: --resim needs joint_positions/joint_velocities in the episodes", file=sys.stderr)
            return 2
        print(gap_report(env, resimulate(env, episodes), out, str(args.source)))
    print(f"reports in {out}")
    return 0
