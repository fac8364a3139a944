"""``robot-rl demo --robot go2``: the shipped Go2 walking policy through the chain on a held-out reality sample.

Stages: (1) deploy: launch/sim_go2.launch.yaml (sim_robot with a held-out reality sample: model variant, encoder
offsets, IMU bias and noise, pushes, latency; policy_node with the safety filter; cmd_vel_source playing a scripted
``/cmd_vel`` sequence; recorder); (2) replay: the bag is imported (``robot_rl.data.legged_bags``: the observation the
policy saw, rebuilt), the ONNX policy is run on it (action agreement) and the same commands are walked in the nominal
simulation (``robot_rl.data.legged_gap``: sim-to-real gap report); (3) tracking from sim_robot's true base state: per
command segment, after ``settle_s``, the mean absolute error of the forward and sideways velocity (base frame) and
of the yaw rate (from the IMU heading), falls and distance; (4) OUT/report.md with plots, latency, safety events and a
video (the deployed run beside the nominal simulation of the same commands).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SHIPPED_MODEL = "models/go2_joystick_ppo"
ENV_ID = "robot_rl/Go2Joystick-v0"
DEFAULT_SEQUENCE = "0.5 0 0 4; 0.8 0 0 3; 0.3 0 0.5 3; 0.5 0 -0.5 3; 0 0 0 2"
"""Walk at 0.5 m/s, speed up to 0.8, turn left and right while walking, stand (vx vy yaw_rate seconds; ...)."""


@dataclass
class LeggedDemoSettings:
    out_dir: Path = Path("runs/demo_go2")
    model: str = SHIPPED_MODEL
    """Exported policy directory (policy.onnx + policy.json) of robot_rl/Go2Joystick-v0."""
    sequence: str = DEFAULT_SEQUENCE
    """The scripted /cmd_vel: ``"vx vy yaw_rate seconds; ..."``."""
    reality_seed: int = 7
    """Seed of sim_robot's held-out reality sample."""
    start_after_s: float = 3.0
    """The robot stands this long (nodes start, DDS discovery) before the sequence starts [s]."""
    settle_s: float = 1.0
    """Tracking errors skip this long after each command change [s]."""
    video: bool = True
    stage_times_s: dict = field(default_factory=dict)

    @property
    def segments(self) -> list[tuple[float, float, float, float]]:
        from robot_rl.deploy.legged_loop import parse_sequence

        return parse_sequence(self.sequence)

    @property
    def duration_s(self) -> float:
        return self.start_after_s + sum(s[3] for s in self.segments) + 3.0  # + node start-up


def deploy_stage(s: LeggedDemoSettings) -> Path:
    from robot_rl.commands._demo_common import DemoError
    from robot_rl.core.assets import find_asset
    from robot_rl.deploy.launch_file import load_launch
    from robot_rl.deploy.launch_runner import run_launch

    bag = s.out_dir / "bag"
    args = {"model": str(find_asset(s.model).resolve()), "seed": str(s.reality_seed), "bag": str(bag.resolve()),
            "state_dir": str((s.out_dir / "state").resolve()), "sequence": s.sequence,
            "start_after_s": str(s.start_after_s)}
    rc = run_launch(load_launch(find_asset("launch/sim_go2.launch.yaml"), args), duration_s=s.duration_s)
    if rc != 0:
        raise DemoError(f"deploy stage: a node exited with code {rc} (its log lines are above, prefixed [name])")
    if not bag.exists():
        raise DemoError(f"deploy stage: the recorder wrote no bag at {bag}")
    return bag


def _rows(raw, topic: str, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(log times [s], rows) of a Float64MultiArray topic."""
    from robot_rl.data.bags import TYPESTORE

    if topic not in raw.topics:
        return np.empty(0), np.empty((0, width))
    msgtype, items = raw.topics[topic]
    rows = [(t, np.asarray(TYPESTORE.deserialize_cdr(p, msgtype).data, dtype=np.float64)) for t, p in items]
    rows = [(t, d[:width]) for t, d in rows if len(d) >= width]
    return np.asarray([t for t, _ in rows]) / 1e9, np.asarray([d for _, d in rows]).reshape(-1, width)


def _yaw(quat_wxyz: np.ndarray) -> np.ndarray:
    w, x, y, z = quat_wxyz.T
    return np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))


def tracking_stage(s: LeggedDemoSettings, bag: Path) -> dict:
    """Per command segment: base-frame velocity and yaw-rate tracking from the true base state, falls, distance."""
    from robot_rl.data.bag_reader import read_bag
    from robot_rl.data.bags import TYPESTORE

    raw = read_bag(bag)
    t_base, base = _rows(raw, "/sim_robot/base_state", 9)
    t_cmd, cmd = _rows(raw, "/policy_node/velocity_command", 4)
    msgtype, items = raw.topics.get("/imu", ("", []))
    imu = [(t / 1e9, TYPESTORE.deserialize_cdr(p, msgtype).orientation) for t, p in items]
    if len(t_base) < 10 or len(t_cmd) < 10 or len(imu) < 10:
        from robot_rl.commands._demo_common import DemoError

        raise DemoError(f"tracking: the bag {bag} lacks /sim_robot/base_state, /policy_node/velocity_command or /imu")
    t_imu = np.asarray([t for t, _ in imu])
    quat = np.asarray([[o.w, o.x, o.y, o.z] for _, o in imu])
    quat = quat[np.clip(np.searchsorted(t_imu, t_base, side="right") - 1, 0, len(quat) - 1)]
    command = cmd[np.clip(np.searchsorted(t_cmd, t_base, side="right") - 1, 0, len(cmd) - 1), :3]
    yaw = np.unwrap(_yaw(quat))
    c, sn = np.cos(yaw), np.sin(yaw)
    v_world = base[:, 4:6]
    v_base = np.stack([c * v_world[:, 0] + sn * v_world[:, 1], -sn * v_world[:, 0] + c * v_world[:, 1]], axis=1)
    t_sim = base[:, 0]
    yaw_rate = np.gradient(yaw, t_sim) if len(t_sim) > 2 else np.zeros_like(yaw)
    # segments of a constant command (as the policy saw it), steady after settle_s
    change = np.r_[True, np.any(np.abs(np.diff(command, axis=0)) > 1e-9, axis=1)]
    starts = np.flatnonzero(change)
    segments = []
    for a, b in zip(starts, np.r_[starts[1:], len(t_sim)]):
        steady = np.arange(a, b)[t_sim[a:b] >= t_sim[a] + s.settle_s]
        if len(steady) < 5:
            continue
        k = command[a]
        dyaw = (yaw[steady[-1]] - yaw[steady[0]]) / max(t_sim[steady[-1]] - t_sim[steady[0]], 1e-9)
        segments.append({"command": k.tolist(), "seconds": float(t_sim[b - 1] - t_sim[a]),
                         "vx_mean": float(v_base[steady, 0].mean()),
                         "vx_mae": float(np.abs(v_base[steady, 0] - k[0]).mean()),
                         "vy_mae": float(np.abs(v_base[steady, 1] - k[1]).mean()),
                         "yaw_rate_mean": float(dyaw), "yaw_rate_error": float(abs(dyaw - k[2]))})
    return {"segments": segments, "fell": bool(base[:, 8].any()), "max_tilt": float(base[:, 7].max()),
            "distance_m": float(np.sum(np.linalg.norm(np.diff(base[:, 1:3], axis=0), axis=1))),
            "t": t_sim - t_sim[0], "v_base": v_base, "yaw_rate": yaw_rate, "command": command,
            "qpos_base": base[:, 1:4], "t_base_log": t_base}


def replay_stage(s: LeggedDemoSettings, bag: Path, model_dir: Path, qpos_out: list | None) -> dict:
    from robot_rl.commands._demo_common import DemoError
    from robot_rl.commands.replay import action_agreement, agreement_report, legged_gap, onnx_policy
    from robot_rl.data.legged_bags import import_legged_bag
    from robot_rl.envs import make

    out = s.out_dir / "replay"
    out.mkdir(parents=True, exist_ok=True)
    env = make(ENV_ID)
    episodes, report = import_legged_bag(bag, env)
    if not episodes:
        raise DemoError(f"replay stage: no intact episode in {bag}: {report.describe()}")
    policy = onnx_policy(model_dir, env)
    agreement = action_agreement(policy, episodes, 0.01)
    agreement_report(agreement, out, f"ONNX policy on the rebuilt observations of {bag.name}", 0.01)
    _, *stats = legged_gap(env, episodes, policy, out, f"deployment bag {bag.name}", qpos_out)
    env.close()
    return {"episodes": episodes, "import_report": report.describe(), "agreement_within_0.01": agreement["within"],
            "agreement_filter_changed": agreement["filter_changed"],
            "agreement_max": float(max(np.abs(p - a).max() for p, a in agreement["per_episode"])),
            "gap": {k: v for k, v in stats[0].items() if k != "target_rms_per_joint"},
            "gap_sim": {k: v for k, v in stats[1].items() if k != "target_rms_per_joint"}}


def _plot_tracking(s: LeggedDemoSettings, tr: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(8, 6), sharex=True)
    t = tr["t"]
    for ax, (label, measured, k) in zip(axes, (("forward [m/s]", tr["v_base"][:, 0], 0),
                                               ("sideways [m/s]", tr["v_base"][:, 1], 1),
                                               ("yaw rate [rad/s]", tr["yaw_rate"], 2))):
        ax.plot(t, measured, label="deployed (true base, reality sample)")
        ax.plot(t, tr["command"][:, k], "k--", label="command the policy saw")
        ax.set_ylabel(label)
    axes[0].legend(fontsize=7)
    axes[-1].set_xlabel("time [s]")
    fig.tight_layout()
    fig.savefig(s.out_dir / "tracking.png", dpi=80)
    plt.close(fig)
    return "tracking.png"


def _video(s: LeggedDemoSettings, tr: dict, replay: dict, sim_qpos: list) -> str | None:
    """The deployed run (left: true base position, IMU orientation, measured joints) beside the nominal simulation
    walking the same commands (right), 5 frames per second of the run.
    """
    from robot_rl.envs import make
    from robot_rl.viz.run_videos import legged_replay_video
    from robot_rl.viz.video import RenderUnavailable

    env = make(ENV_ID)
    try:
        ep = max(replay["episodes"], key=len)
        ib = np.clip(np.searchsorted(tr["t_base_log"], np.asarray(ep.time_s)), 0, len(tr["qpos_base"]) - 1)
        path, _n, _fps = legged_replay_video(env, ep, sim_qpos[replay["episodes"].index(ep)],
                                             s.out_dir / "deployment.gif", base_position=tr["qpos_base"][ib, :3])
        return path.name
    except RenderUnavailable as exc:
        print(f"demo: no video: {exc}")
        return None
    finally:
        env.close()


def write_report(s: LeggedDemoSettings, summary: dict, files: dict) -> Path:
    lines = ["# robot_rl demo report: Unitree Go2", "", f"Generated {time.strftime('%Y-%m-%d %H:%M:%S')} in "
             f"`{s.out_dir}`: policy `{s.model}` on sim_robot's held-out reality sample {s.reality_seed}, "
             f"/cmd_vel sequence `{s.sequence}`.", "",
             "| quantity | value |", "|---|---|",
             f"| fell | {summary['fell']} (max tilt {summary['max_tilt']:.2f} rad) |",
             f"| distance walked | {summary['distance_m']:.2f} m |",
             f"| policy_node sensor receive -> command publish p50 / p99 / max [ms] | {summary['latency_p50_ms']:.2f} "
             f"/ {summary['latency_p99_ms']:.2f} / {summary['latency_max_ms']:.2f} |",
             f"| commands per second | {summary['command_rate_hz']:.1f} |",
             f"| safety filter fallbacks (safe commands) | {summary['safe_commands']} |",
             f"| diagnostics errors | {summary['diagnostics_errors']} |",
             f"| ONNX on the rebuilt observations: steps within 0.01 of the logged action | "
             f"{100 * summary['agreement_within_0.01']:.1f} % |", "",
             "## Velocity tracking (after the first "
             f"{s.settle_s:g} s of each command)", "",
             "| command vx vy yaw rate | s | mean vx [m/s] | vx MAE [m/s] | vy MAE [m/s] | mean yaw rate [rad/s] | "
             "yaw-rate error [rad/s] |", "|---|---|---|---|---|---|---|"]
    for g in summary["segments"]:
        k = " ".join(f"{v:g}" for v in g["command"])
        lines.append(f"| {k} | {g['seconds']:.1f} | {g['vx_mean']:.3f} | {g['vx_mae']:.3f} | {g['vy_mae']:.3f} | "
                     f"{g['yaw_rate_mean']:.3f} | {g['yaw_rate_error']:.3f} |")
    lines += ["", f"![tracking]({files['tracking']})", ""]
    if files.get("video"):
        lines += [f"![deployment video]({files['video']})", ""]
    lines += ["## Sim-to-real gap", "", "Details: [replay/gap_report.md](replay/gap_report.md); action agreement: "
              "[replay/agreement.md](replay/agreement.md).", "",
              "Stage times: " + ", ".join(f"{k} {v:.0f} s" for k, v in s.stage_times_s.items()), ""]
    path = s.out_dir / "report.md"
    path.write_text("\n".join(lines))
    return path


def run_legged_demo(s: LeggedDemoSettings) -> dict:
    """Every stage; the summary dict is also written to ``out_dir/summary.json``."""
    from robot_rl.commands._demo_common import _stage, bag_metrics, keep_previous
    from robot_rl.core.assets import find_asset
    from robot_rl.core.profile import load_profile

    s.segments  # noqa: B018 - validates the sequence before anything starts
    keep_previous(s.out_dir)
    s.out_dir.mkdir(parents=True, exist_ok=True)
    with _stage("1/4 deploy: sim_robot (Go2 reality sample) + policy_node + cmd_vel_source + recorder", s):
        bag = deploy_stage(s)
    sim_qpos: list = []
    with _stage("2/4 replay the bag: rebuilt observations, action agreement, sim-to-real gap", s):
        metrics = bag_metrics(bag, load_profile("go2").topics.commands)
        replay = replay_stage(s, bag, find_asset(s.model), sim_qpos if s.video else None)
    with _stage("3/4 velocity tracking from the true base state", s):
        tracking = tracking_stage(s, bag)
    with _stage("4/4 report", s):
        files = {"tracking": _plot_tracking(s, tracking)}
        if s.video:
            files["video"] = _video(s, tracking, replay, sim_qpos)
        summary = {k: v for k, v in metrics.items() if k != "latency_s"}
        summary.update({k: v for k, v in replay.items() if k != "episodes"})
        summary.update({k: v for k, v in tracking.items() if k in ("segments", "fell", "max_tilt", "distance_m")})
        summary["stage_times_s"] = dict(s.stage_times_s)
        report = write_report(s, summary, files)
        (s.out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    summary["report"] = str(report)
    summary["files"] = files
    return summary


def print_legged_summary(summary: dict) -> None:
    print()
    print(f"fell: {summary['fell']}; walked {summary['distance_m']:.2f} m; latency p50 {summary['latency_p50_ms']:.2f} "
          f"ms, p99 {summary['latency_p99_ms']:.2f} ms; safety fallbacks {summary['safe_commands']}; agreement "
          f"{100 * summary['agreement_within_0.01']:.1f} % within 0.01")
    for g in summary["segments"]:
        k = " ".join(f"{v:g}" for v in g["command"])
        print(f"  command [{k}]: vx MAE {g['vx_mae']:.3f} m/s, yaw-rate error {g['yaw_rate_error']:.3f} rad/s")
    print(f"report: {summary['report']}")
