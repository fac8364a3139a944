"""The end-to-end workflow on the cart-pole, in about ten minutes on 2 CPU cores.

    robot-rl demo                   # train SAC (domain randomization) -> export ONNX -> deploy over ROS 2 -> replay
    robot-rl demo --skip-train      # deploy the shipped model (models/cartpole_swingup_sac) instead: seconds
    robot-rl demo --robot go2       # the shipped Go2 walking policy on a reality sample (commands/_demo_legged.py)

Stages: (1) SAC on robot_rl/CartpoleSwingupRail-v0 with config/sac_cartpole_swingup.yaml, (2) `robot-rl export` with
the ONNX checker and torch-vs-onnxruntime parity, (3) launch/sim_policy.launch.yaml: sim_robot with a held-out
reality randomization sample, policy_node with the safety filter, recorder (MCAP), (4) replay of the bag: action
agreement and the sim-to-real gap report, (5) a summary table and OUT/report.md with plots and a deployment video.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from robot_rl.commands._demo_common import DemoError, _stage, bag_metrics, keep_previous  # noqa: F401 (API)

HELP = "end-to-end: train SAC on cart-pole, export ONNX, deploy over ROS 2, replay the bag, write a report"

# --------------------------------------------------------------------------- the workflow
# run_demo runs the stages of the module docstring in order; the deployment is a fixed-time closed loop over real
# DDS on loopback, and the report holds PNG plots (learning curve, deployed trajectories vs the training simulator's
# one-step prediction, latency histogram) and a video of the logged run beside its re-simulation.
# DemoSettings.skip_train uses the shipped model (models/cartpole_swingup_sac) instead of stages 1-2.

SHIPPED_MODEL = "models/cartpole_swingup_sac"
DEMO_CONFIG = "config/sac_cartpole_swingup.yaml"
DEPLOY_ENV = "robot_rl/CartpoleSwingupRail-v0"  # the env of DEMO_CONFIG (sim_robot ignores its termination)


@dataclass
class DemoSettings:
    out_dir: Path = Path("runs/demo")
    """Everything the demo writes goes here (train/, model/, bag/, replay/, report.md)."""
    config: str = DEMO_CONFIG
    """Training experiment config."""
    overrides: tuple[str, ...] = ()
    """``key=value`` overrides of the training config (e.g. ``train.total_steps=2000`` for a smoke run)."""
    skip_train: bool = False
    """Use the shipped model instead of training and exporting."""
    duration_s: float = 16.0
    """Closed-loop run time [s] (the first second or so is DDS discovery and node start-up)."""
    reality_seed: int = 7
    """Seed of sim_robot's held-out reality randomization sample (training never sees it)."""
    video: bool = True
    """Render the deployment (logged vs re-simulated) to a video / animated preview."""
    trigger: str = "sensor"
    """policy_node's ``trigger``: ``sensor`` (its default: act on the first joint-state message of each period) or
    ``timer`` (every period on the latest sample)."""
    stage_times_s: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- stages


def train_stage(s: DemoSettings) -> tuple[Path, dict]:
    from robot_rl.core.assets import find_asset
    from robot_rl.train import train
    from robot_rl.train.config import load_experiment

    cfg = load_experiment(find_asset(s.config), list(s.overrides))
    run_dir = s.out_dir / "train"
    info = train(cfg, run_dir)
    if info.get("status") != "complete":
        raise DemoError(f"training stage ended with status {info.get('status')!r} (see {run_dir})")
    return run_dir, info


def export_stage(s: DemoSettings, run_dir: Path) -> tuple[Path, dict]:
    """``robot-rl export RUN_DIR --out OUT/model``, through the export command's own parser and ``run``."""
    from robot_rl.commands import export as export_command
    from robot_rl.core.config import ConfigError

    model_dir = s.out_dir / "model"
    parser = argparse.ArgumentParser(prog="robot-rl export")
    export_command.add_arguments(parser)
    try:
        rc = export_command.run(parser.parse_args([str(run_dir), "--out", str(model_dir)]))
    except (ConfigError, FileNotFoundError) as exc:
        raise DemoError(f"export stage failed: {exc}") from exc
    if rc != 0:
        raise DemoError(f"export stage failed with exit code {rc}")
    return model_dir, json.loads((model_dir / "policy.json").read_text())


def deploy_stage(s: DemoSettings, model_dir: Path) -> Path:
    from robot_rl.core.assets import find_asset
    from robot_rl.deploy.launch_file import load_launch
    from robot_rl.deploy.launch_runner import run_launch

    bag = s.out_dir / "bag"
    args = {"model": str(model_dir.resolve()), "env_id": DEPLOY_ENV, "randomization": "reality",
            "seed": str(s.reality_seed), "bag": str(bag.resolve()), "state_dir": str((s.out_dir / "state").resolve()),
            "trigger": s.trigger}
    desc = load_launch(find_asset("launch/sim_policy.launch.yaml"), args)
    rc = run_launch(desc, duration_s=s.duration_s)
    if rc != 0:
        raise DemoError(f"deploy stage: a node exited with code {rc} (its log lines are above, prefixed [name])")
    if not bag.exists():
        raise DemoError(f"deploy stage: the recorder wrote no bag at {bag}")
    return bag


def replay_stage(s: DemoSettings, bag: Path, model_dir: Path) -> dict:
    """Import the bag with the policy node's observation builder, then agreement + gap report."""
    from robot_rl.commands.replay import gap_report, resimulate
    from robot_rl.core.profile import load_profile
    from robot_rl.data.bags import ImportSettings, action_to_command, import_bag
    from robot_rl.data.relabel import flat_observations
    from robot_rl.envs import make
    from robot_rl.export.runtime import OnnxPolicy

    out = s.out_dir / "replay"
    out.mkdir(parents=True, exist_ok=True)
    env = make(DEPLOY_ENV)
    profile = load_profile(env.unwrapped.profile.name)
    # Commands (Float64MultiArray) carry no header, so joint states are aligned on the recorder's receive time too:
    # one clock for both, whatever the robot's clock says.
    settings = ImportSettings(control_period_s=float(env.unwrapped.control_dt), split="gap", stamp="log")
    episodes, report = import_bag(bag, env, settings)
    if not episodes:
        raise DemoError(f"replay stage: no intact episode in {bag}: {report.describe()}")
    ep = max(episodes, key=len)
    # The training episode length (10 s for the cart-pole): the deployed return is comparable to the training one.
    horizon = int(getattr(env.unwrapped, "max_episode_steps", None) or len(ep))
    deployed_return = float(np.sum(ep.rewards[:horizon]))
    policy = OnnxPolicy.load(model_dir, profile)
    obs = flat_observations(ep.observations)[:-1].astype(np.float32)
    pred = np.stack([np.asarray(policy(o), dtype=np.float64).reshape(-1) for o in obs])
    logged = action_to_command(np.asarray(ep.actions, dtype=np.float64), profile)
    sims = resimulate(env, [ep])
    gap_text = gap_report(env, sims, out, f"deployment bag {bag.name}")
    dq = sims[0]["q_pred"] - sims[0]["q_log"]
    dqd = sims[0]["qd_pred"] - sims[0]["qd_log"]
    names = list(profile.joint_names)
    env.close()
    return {
        "episodes": len(episodes), "steps": len(ep), "deployed_return": deployed_return,
        "deployed_return_steps": min(horizon, len(ep)),
        "agreement_rmse": np.sqrt(((pred - logged) ** 2).mean(0)).tolist(),
        "agreement_max": float(np.abs(pred - logged).max()),
        "gap_rmse_q": dict(zip(names, np.sqrt((dq ** 2).mean(0)).tolist())),
        "gap_rmse_qd": dict(zip(names, np.sqrt((dqd ** 2).mean(0)).tolist())),
        "gap_report": gap_text, "sims": sims, "episode": ep, "pred": pred, "logged": logged,
        "import_report": report.describe(),
    }


# --------------------------------------------------------------------------- report


def _plots(s: DemoSettings, metrics: dict, replay: dict) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = s.out_dir
    files = {}
    lat = metrics["latency_s"] * 1e3
    if len(lat):
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.hist(lat, bins=60, color="tab:blue")
        for q, style in ((50, "--"), (99, ":")):
            ax.axvline(np.percentile(lat, q), color="k", ls=style, label=f"p{q} {np.percentile(lat, q):.2f} ms")
        ax.set_xlabel("sensor -> command latency [ms]")
        ax.set_ylabel("commands")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "latency_hist.png", dpi=80)
        plt.close(fig)
        files["latency"] = "latency_hist.png"
    sim = replay["sims"][0]
    t = np.arange(len(sim["q_log"])) * sim["dt"]
    fig, axes = plt.subplots(3, 1, figsize=(8, 6), sharex=True)
    for i, name in enumerate(("slider [m]", "hinge [rad]")):
        axes[i].plot(t, sim["q_log"][:, i], label="deployed (sim_robot reality)")
        axes[i].plot(t, sim["q_pred"][:, i], "--", label="training simulator, one step ahead")
        axes[i].set_ylabel(name)
    axes[2].plot(t, replay["logged"][:len(t), 0], label="command sent")
    axes[2].plot(t, replay["pred"][:len(t), 0], "--", label="ONNX policy on logged obs")
    axes[2].set_ylabel("force [N]")
    axes[2].set_xlabel("time [s]")
    axes[0].legend(fontsize=7)
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "deployed_trajectories.png", dpi=80)
    plt.close(fig)
    files["trajectories"] = "deployed_trajectories.png"
    return files


def _video(s: DemoSettings, replay: dict) -> str | None:
    from robot_rl.envs import make
    from robot_rl.viz.video import RenderUnavailable, side_by_side_frames, write_video

    env = make(DEPLOY_ENV)
    u = env.unwrapped
    sim = replay["sims"][0]
    try:
        qpos_log, qpos_sim = u.qpos_from_joints(sim["q_log"]), u.qpos_from_joints(sim["q_pred"])
        # A 10 fps preview of the 50 Hz run: software (OSMesa) rendering costs ~40-130 ms per frame on 2 cores, and
        # the GIF stays small enough to embed in the report. `robot-rl replay --video` renders every step.
        stride = 5
        frames = side_by_side_frames(u.model, qpos_log[::stride], qpos_sim[::stride], height=150, width=200,
                                     labels=("deployed", "training sim (1-step)"))
        path = write_video(frames, s.out_dir / "deployment.gif", fps=1.0 / (sim["dt"] * stride))
        return path.name
    except RenderUnavailable as exc:
        print(f"demo: no video: {exc}")
        return None
    finally:
        env.close()


def write_report(s: DemoSettings, summary: dict, files: dict) -> Path:
    rows = [("training return (final eval)", summary.get("train_return")),
            ("deployed return (first episode horizon)", summary["deployed_return"]),
            (f"policy_node sensor receive -> command publish p50 / p99 / max [ms], trigger {summary['trigger']}",
             f"{summary['latency_p50_ms']:.2f} / {summary['latency_p99_ms']:.2f} / {summary['latency_max_ms']:.2f}"),
            ("commands per second", summary["command_rate_hz"]),
            ("safe commands (safety filter fallbacks)", summary["safe_commands"]),
            ("non-finite commands on the wire", summary["nonfinite_commands"]),
            ("ONNX vs logged command max \\|diff\\| [N]", f"{summary['agreement_max']:.3g}")]
    rows += [(f"gap {j}: position / velocity RMSE", f"{summary['gap_rmse_q'][j]:.3g} / {summary['gap_rmse_qd'][j]:.3g}")
             for j in summary["gap_rmse_q"]]
    lines = ["# robot_rl demo report", "", f"Generated {time.strftime('%Y-%m-%d %H:%M:%S')} in `{s.out_dir}`.", "",
             "| quantity | value |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in rows]
    lines += ["", "Stage times: " + ", ".join(f"{k} {v:.0f} s" for k, v in s.stage_times_s.items()), ""]
    if "learning_curve" in files:
        lines += ["## Learning curve", "", f"![learning curve]({files['learning_curve']})", ""]
    lines += ["## Deployment", "", "Deployed joint trajectories (sim_robot with a held-out reality sample) against the",
              "training simulator's one-step prediction from each logged state, and the commands:", "",
              f"![trajectories]({files['trajectories']})", ""]
    if files.get("video"):
        lines += [f"![deployment video]({files['video']})", ""]
    if "latency" in files:
        lines += ["## Latency", "", f"![latency]({files['latency']})", ""]
    lines += ["## Sim-to-real gap", "", "Details: [replay/gap_report.md](replay/gap_report.md)", ""]
    path = s.out_dir / "report.md"
    path.write_text("\n".join(lines))
    return path


def run_demo(s: DemoSettings) -> dict:
    """Run every stage; returns the summary dict (also written to ``out_dir/summary.json``).

    A previous demo output in ``out_dir`` (training run, bag, report) is moved to ``<out_dir>.previous`` first (the
    one before that is deleted), so the demo can run again and the last run stays for comparison.
    """
    keep_previous(s.out_dir)
    s.out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    summary: dict = {"train_return": None}
    if s.skip_train:
        from robot_rl.core.assets import find_asset

        model_dir = find_asset(SHIPPED_MODEL)
        sidecar = json.loads((model_dir / "policy.json").read_text())
        summary["train_return"] = (sidecar.get("metrics") or {}).get("return_mean")
    else:
        with _stage("1/5 train SAC on cart-pole swing-up (domain randomization on)", s):
            run_dir, info = train_stage(s)
            summary["train_return"] = (info.get("final_eval") or {}).get("return_mean")
            lc = run_dir / "learning_curve.png"
            if lc.exists():
                files["learning_curve"] = str(lc.relative_to(s.out_dir))
        with _stage("2/5 export to ONNX (checker, parity, sidecar)", s):
            model_dir, sidecar = export_stage(s, run_dir)
    summary["model_dir"] = str(model_dir)
    with _stage("3/5 deploy: sim_robot (reality sample) + policy_node + recorder over ROS 2", s):
        bag = deploy_stage(s, model_dir)
    with _stage("4/5 replay the bag: action agreement and sim-to-real gap", s):
        metrics = bag_metrics(bag)
        replay = replay_stage(s, bag, model_dir)
    with _stage("5/5 report", s):
        files.update(_plots(s, metrics, replay))
        if s.video:
            files["video"] = _video(s, replay)
        summary.update({k: v for k, v in metrics.items() if k != "latency_s"})
        summary.update({k: v for k, v in replay.items()
                        if k not in ("sims", "episode", "pred", "logged", "gap_report")})
        summary["stage_times_s"] = dict(s.stage_times_s)
        report = write_report(s, summary, files)
        (s.out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    summary["report"] = str(report)
    summary["files"] = files
    return summary


def print_summary(summary: dict) -> None:
    def fmt(v):
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    rows = [("training return", summary.get("train_return")), ("deployed return", summary["deployed_return"]),
            ("policy_node trigger", summary["trigger"]), ("commands per second", summary["command_rate_hz"]),
            ("latency p50 [ms]", summary["latency_p50_ms"]), ("latency p99 [ms]", summary["latency_p99_ms"]),
            ("safety fallbacks", summary["safe_commands"]), ("non-finite commands", summary["nonfinite_commands"])]
    rows += [(f"gap RMSE {j} (pos / vel)", f"{summary['gap_rmse_q'][j]:.3g} / {summary['gap_rmse_qd'][j]:.3g}")
             for j in summary["gap_rmse_q"]]
    width = max(len(k) for k, _ in rows)
    print("\n" + "-" * (width + 20))
    for k, v in rows:
        print(f"{k:<{width}}  {fmt(v)}")
    print("-" * (width + 20))
    print(f"report: {summary['report']}")


# --------------------------------------------------------------------------- command line


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--robot", choices=("cartpole", "go2"), default="cartpole",
                   help="cartpole (default: train, export, deploy, replay) or go2 (the shipped walking policy on a "
                        "held-out reality sample: deploy with a scripted /cmd_vel, replay, tracking, video)")
    p.add_argument("--out", type=Path, default=None, help="output directory (default runs/demo, runs/demo_go2)")
    p.add_argument("--skip-train", action="store_true", help="use the shipped model instead of training")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override the training config, e.g. --set train.total_steps=5000")
    p.add_argument("--duration", type=float, default=16.0, help="closed-loop run time in seconds (default 16)")
    p.add_argument("--reality-seed", type=int, default=7, help="seed of the held-out reality sample (default 7)")
    p.add_argument("--sequence", default=None, help="go2: the scripted /cmd_vel, 'vx vy yaw_rate seconds; ...' "
                   "(default: walk 0.5 then 0.8 m/s, turn left and right at 0.5 rad/s, stand)")
    p.add_argument("--no-video", action="store_true", help="skip rendering the deployment video")
    p.add_argument("--trigger", choices=("sensor", "timer"), default="sensor",
                   help="policy_node trigger: sensor (default: act on the first joint-state message of each control "
                        "period, lowest latency) or timer (every period on the latest sample)")


def _run_go2(args) -> int:
    from robot_rl.commands._demo_legged import (
        DEFAULT_SEQUENCE,
        LeggedDemoSettings,
        print_legged_summary,
        run_legged_demo,
    )

    settings = LeggedDemoSettings(out_dir=args.out or Path("runs/demo_go2"), reality_seed=args.reality_seed,
                                  sequence=args.sequence or DEFAULT_SEQUENCE, video=not args.no_video)
    try:
        summary = run_legged_demo(settings)
    except (DemoError, ValueError) as exc:
        print(f"robot-rl demo: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, DemoError) else 2
    print_legged_summary(summary)
    return 0


def run(args) -> int:
    if args.robot == "go2":
        return _run_go2(args)
    args.out = args.out or Path("runs/demo")
    if args.duration <= 2:
        print(f"robot-rl demo: --duration must be > 2 s, got {args.duration}", file=sys.stderr)
        return 2
    settings = DemoSettings(out_dir=args.out, overrides=tuple(args.overrides), skip_train=args.skip_train,
                            duration_s=args.duration, reality_seed=args.reality_seed, video=not args.no_video,
                            trigger=args.trigger)
    try:
        summary = run_demo(settings)
    except DemoError as exc:
        print(f"robot-rl demo: {exc}", file=sys.stderr)
        return 1
    print_summary(summary)
    return 0
