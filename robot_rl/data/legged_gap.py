"""Sim-to-real gap of a legged robot: the logged run next to the same policy walking the same commands in simulation.

A quadruped's floating base is not measured (no base position or velocity in a robot's logs), so the one-step
re-simulation used for fixed-base robots cannot start from a logged state. Instead ``simulate_like`` runs the policy
closed loop in the nominal simulation (the model the policy was trained on, no randomization) under each logged
episode's velocity-command sequence, and ``gap_stats`` measures the same quantities on both runs from what the robot
measures (observations rebuilt by ``robot_rl.data.legged_bags``):

* joint target tracking: RMS of ``target_k - q_{k+1}`` per joint [rad] (the PD's lag under load) and the lag that
  maximizes the cross-correlation of target and position [control steps];
* yaw-rate tracking: mean |IMU yaw rate - commanded| [rad/s];
* roll/pitch rate RMS [rad/s], mean tilt [rad], joint velocity RMS [rad/s], action change RMS, falls.

A ratio far from 1 points at what the simulation gets wrong (e.g. tracking RMS x2: gains or friction; yaw-rate error
up: foot friction; lag up: latency).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

STATS = (("yaw_rate_mae", "yaw-rate tracking error (mean abs)", "rad/s"),
         ("target_rms", "joint target tracking (RMS over joints)", "rad"),
         ("lag_steps", "target -> position lag (mean over joints)", "steps"),
         ("roll_pitch_rate_rms", "roll/pitch rate RMS", "rad/s"),
         ("tilt_mean", "mean tilt", "rad"),
         ("joint_vel_rms", "joint velocity RMS", "rad/s"),
         ("action_rate_rms", "action change per step RMS", "1"),
         ("falls", "falls", ""))


def _layout(n_joints: int) -> dict[str, slice]:
    n = n_joints
    return {"ang_vel": slice(0, 3), "gravity": slice(3, 6), "joint_pos": slice(6, 6 + n),
            "joint_vel": slice(6 + n, 6 + 2 * n), "command": slice(6 + 3 * n, 9 + 3 * n)}


def xcorr_lag(cmd: np.ndarray, response: np.ndarray, max_lag: int) -> int:
    """Lag (steps, 0..max_lag) maximizing the normalized cross-correlation of ``response[t + lag]`` with ``cmd[t]``."""
    c = cmd - cmd.mean()
    r = response - response.mean()
    best, best_val = 0, -np.inf
    for lag in range(max_lag + 1):
        a, b = c[:len(c) - lag], r[lag:]
        den = np.linalg.norm(a) * np.linalg.norm(b)
        val = float(a @ b / den) if den > 0 else -np.inf
        if val > best_val:
            best, best_val = lag, val
    return best


def gap_stats(runs: list[tuple[np.ndarray, np.ndarray, bool]], center, half_range, standing,
              ) -> dict:
    """The module docstring's quantities over ``runs``: ``(observations (T+1, n_obs), normalized actions (T, n_j),
    fell)`` each; ``center``/``half_range``: the action map (joint target = center + half_range * a) [rad];
    ``standing``: the pose the observation's joint positions are relative to [rad].
    """
    n_j = runs[0][1].shape[1]
    lay = _layout(n_j)
    offset = np.asarray(center, dtype=np.float64) - np.asarray(standing, dtype=np.float64)
    half = np.asarray(half_range, dtype=np.float64)
    err, yaw, rp, tilt, qd, da, lags = [], [], [], [], [], [], []
    for obs, act, _fell in runs:
        obs = np.asarray(obs, dtype=np.float64)
        act = np.asarray(act, dtype=np.float64)
        target_rel = offset + half * act  # joint targets relative to the standing pose, like the observation
        q_rel = obs[1:, lay["joint_pos"]]
        err.append(target_rel - q_rel)
        yaw.append(np.abs(obs[1:, 2] - obs[:-1, lay["command"]][:, 2]))
        rp.append(obs[1:, 0] ** 2 + obs[1:, 1] ** 2)
        tilt.append(np.arccos(np.clip(-obs[:, lay["gravity"]][:, 2], -1.0, 1.0)))
        qd.append(obs[:, lay["joint_vel"]] ** 2)
        da.append(np.sum(np.diff(act, axis=0) ** 2, axis=1))
        if len(act) > 10:
            lags.append([xcorr_lag(target_rel[:, j], q_rel[:, j], 5) for j in range(n_j)])
    e = np.concatenate(err)
    return {"target_rms_per_joint": np.sqrt((e ** 2).mean(0)), "target_rms": float(np.sqrt((e ** 2).mean())),
            "yaw_rate_mae": float(np.concatenate(yaw).mean()),
            "roll_pitch_rate_rms": float(np.sqrt(np.concatenate(rp).mean())),
            "tilt_mean": float(np.concatenate(tilt).mean()), "joint_vel_rms": float(np.sqrt(np.concatenate(qd).mean())),
            "action_rate_rms": float(np.sqrt(np.concatenate(da).mean())) if da else 0.0,
            "lag_steps": float(np.mean(lags)) if lags else float("nan"),
            "falls": float(sum(bool(f) for *_, f in runs)), "steps": int(len(e))}


def simulate_like(env, episodes, policy, *, seed: int = 0, qpos_out: list | None = None,
                  ) -> list[tuple[np.ndarray, np.ndarray, bool]]:
    """Each logged episode's command sequence walked by ``policy`` (``(B, n_obs) -> (B, n_act)`` normalized) in the
    nominal simulation of ``env``'s task, from the standing start: ``[(observations, actions, fell)]``.
    ``qpos_out``: a list that gets each run's ``(T+1, nq)`` positions in the visual model (for videos).
    """
    u = env.unwrapped
    runs = []
    for i, ep in enumerate(episodes):
        commands = np.asarray(ep.infos["velocity_command"], dtype=np.float64)
        sim = type(u)(u.task, randomization="nominal", seed=seed + i, max_episode_steps=len(ep) + 1)
        try:
            obs, _ = sim.reset(seed=seed + i, options={"command": commands[0]})
            observations, actions, fell = [obs], [], False
            qpos = [sim.visual_scene()[1].qpos.copy()] if qpos_out is not None else None
            for k in range(len(ep)):
                a = np.clip(np.asarray(policy(obs[None].astype(np.float32)), dtype=np.float64)[0], -1.0, 1.0)
                sim.set_command(commands[k + 1])  # the command of the next observation, as the log has it
                obs, _r, term, _trunc, _info = sim.step(a)
                observations.append(obs)
                actions.append(a)
                if qpos is not None:
                    qpos.append(sim.visual_scene()[1].qpos.copy())
                if term:
                    fell = True
                    break
            runs.append((np.asarray(observations), np.asarray(actions), fell))
            if qpos_out is not None:
                qpos_out.append(np.asarray(qpos))
        finally:
            sim.close()
    return runs


def gap_report(env, logged: dict, simulated: dict, logged_runs, sim_runs, out: Path, title: str) -> str:
    """Write gap_report.md + PNGs into ``out`` (logged vs simulated ``gap_stats``); returns the Markdown text."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    u = env.unwrapped
    joints = list(u.profile.command_joints)
    dt = u.profile.control_period_s
    lines = [f"# Sim-to-real gap (legged): {title}", "",
             f"{len(logged_runs)} logged episode(s), {logged['steps']} steps at {dt * 1e3:.0f} ms; the same policy "
             f"walked the same velocity commands in the nominal simulation ({u.task.name}, no randomization, from "
             f"standing): {simulated['steps']} steps.", "",
             "| quantity | logged | simulated | logged / simulated |", "|---|---|---|---|"]
    for key, label, unit in STATS:
        a, b = logged[key], simulated[key]
        ratio = f"{a / b:.2f}" if b not in (0.0,) and np.isfinite(b) and key != "falls" else "-"
        lines.append(f"| {label} | {a:.3g} {unit} | {b:.3g} {unit} | {ratio} |")
    lines += ["", "## Joint target tracking (RMS of target - next position)", "",
              "| joint | logged [rad] | simulated [rad] |", "|---|---|---|"]
    lines += [f"| {j} | {a:.4f} | {b:.4f} |" for j, a, b in zip(joints, logged["target_rms_per_joint"],
                                                                 simulated["target_rms_per_joint"])]
    lay = _layout(len(joints))
    (obs_l, act_l, _), (obs_s, act_s, _) = logged_runs[0], sim_runs[0]
    n = min(len(act_l), len(act_s), int(round(5.0 / dt)))
    show = [1, 2] if len(joints) > 2 else list(range(len(joints)))
    fig, axes = plt.subplots(len(show) + 1, 1, figsize=(8, 2.0 * (len(show) + 1)), sharex=True)
    t = np.arange(n) * dt
    for ax, j in zip(axes, show):
        ax.plot(t, obs_l[1:n + 1, lay["joint_pos"]][:, j], label="logged")
        ax.plot(t, obs_s[1:n + 1, lay["joint_pos"]][:, j], "--", label="simulated")
        ax.set_ylabel(f"{joints[j]}\n- standing [rad]", fontsize=7)
    axes[-1].plot(t, obs_l[1:n + 1, 2], label="logged")
    axes[-1].plot(t, obs_s[1:n + 1, 2], "--", label="simulated")
    axes[-1].plot(t, obs_l[:n, lay["command"]][:, 2], ":", color="k", label="command")
    axes[-1].set_ylabel("yaw rate [rad/s]", fontsize=7)
    axes[-1].set_xlabel("time [s]")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "gap_timeseries.png", dpi=80)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(8, 3))
    x = np.arange(len(joints))
    ax.bar(x - 0.2, logged["target_rms_per_joint"], 0.4, label="logged")
    ax.bar(x + 0.2, simulated["target_rms_per_joint"], 0.4, label="simulated")
    ax.set_xticks(x, joints, rotation=60, fontsize=7)
    ax.set_ylabel("target tracking RMS [rad]")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "gap_tracking.png", dpi=80)
    plt.close(fig)
    lines += ["", "![time series](gap_timeseries.png)", "", "![tracking](gap_tracking.png)", ""]
    text = "\n".join(lines)
    (out / "gap_report.md").write_text(text)
    return text
