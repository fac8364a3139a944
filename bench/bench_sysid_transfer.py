"""Does system identification from a deployment log close the sim-to-real gap? The loop a user runs on a robot:
deploy, record, identify, retrain on the re-centred randomization, deploy again.

1. Deploy the shipped cart-pole swing-up policy (models/cartpole_swingup_sac) through the ROS 2 loop on a held-out
   reality sample where it does badly (``--seed``, default 4), ``--record-s`` seconds, recorded by the recorder.
2. ``robot-rl sysid BAG --env <the policy's env> --base <its training profile>`` (from policy.json): pole mass,
   joint damping, motor gain and latency from that bag, and the training profile re-centred on them. The estimates
   are compared with the sample's drawn values (its joint damping drifts: re-drawn every 2 s, so the log sees an
   average).
3. ``robot-rl train --config config/sac_cartpole_swingup.yaml --set env.randomization=<re-centred profile> --set
   seed=<s>`` for each of ``--train-seeds`` (the shipped recipe, only the profile changed), and the control: the
   same recipe and seeds on its own profile (for the recipe's seed that is the shipped policy itself), so that what
   the identification buys is told apart from what any retraining buys (a sample the shipped seed fails by chance
   is closed by another seed without any identification). Two trainings at a time, one per core; then export.
   With ``--finetune-steps N`` every policy (re-centred and control, every seed) is instead fine-tuned for N steps
   from the shipped policy's training checkpoint (``--checkpoint``, ``train.init_from``): the same start, the same
   extra training, only the profile differs.
4. ``robot-rl transfer`` of the shipped, the retrained and the control policies on the sample (Python env and ROS
   loop) and, Python env only, on the 20 reality samples (did the retrained policies only learn this robot?). Gap
   closed = (policy - shipped) / (nominal - shipped) on the sample, per training seed and for their mean.

    .venv/bin/python bench/bench_sysid_transfer.py --out bench/results/sysid_transfer.md
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml
from _machine import machine_header

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "cartpole_swingup_sac"
RECIPE = "config/sac_cartpole_swingup.yaml"
RECIPE_SEED = yaml.safe_load((REPO / RECIPE).read_text())["seed"]
"""The recipe's seed: ``make models`` trains the shipped policy with it, so it is its own control."""
_SIDECAR = json.loads((MODEL / "policy.json").read_text())
ENV = _SIDECAR["env_id"]
TRAINING_RZ = _SIDECAR["training"]["config"]["env"]["randomization"]
CLI = [sys.executable, "-m", "robot_rl.cli"]


def record(seed: int, seconds: float, out: Path) -> Path:
    from robot_rl.deploy.launch_file import load_launch
    from robot_rl.deploy.launch_runner import run_launch

    bag = out / "bag"
    if bag.exists():  # a rerun on the same log (e.g. --widen against the default)
        return bag
    args = {"model": str(MODEL), "env_id": ENV, "randomization": "reality", "seed": str(seed), "bag": str(bag),
            "state_dir": str(out / "state")}
    with open(out / "record.log", "w") as log:
        rc = run_launch(load_launch(REPO / "launch" / "sim_policy.launch.yaml", args), duration_s=seconds + 3.0,
                        out=log)
    if rc != 0 or not bag.exists():
        raise SystemExit(f"recording failed (exit {rc}), see {out / 'record.log'}")
    return bag


def truth(seed: int, names: list[str]) -> dict[str, float]:
    """The sample's drawn values in the fit's terms (joint damping as offsets from the nominal model)."""
    from robot_rl.envs import make

    env = make(ENV, randomization="reality", seed=seed)
    info = dict(env.unwrapped.randomization_info)
    nominal = make(ENV).unwrapped.model
    out = {}
    for n in names:
        kind, _, elem = n.partition("/")
        if kind == "joint_damping_offset":
            d0 = float(nominal.dof_damping[nominal.jnt_dofadr[nominal.joint(elem).id]])
            scale = info.get(f"joint_damping_scale/{elem}", 1.0)
            out[n] = d0 * (scale - 1.0) + info.get(f"joint_damping_offset/{elem}", 0.0)
        elif n in info:
            out[n] = float(info[n])
    out["action_latency_steps"] = float(info.get("action_latency_steps", 0))
    env.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=4,
                    help="reality sample (default 4: the shipped recipe's weakest over 3 training seeds, "
                         "bench/results/transfer_cartpole.md)")
    ap.add_argument("--record-s", type=float, default=60.0, help="seconds of deployment log (default 60)")
    ap.add_argument("--train-seeds", type=int, nargs="+", default=[0, 1, 2, 3],
                    help="retraining seeds (default 0 1 2 3)")
    ap.add_argument("--widen", action="store_true", help="robot-rl sysid --widen: the base's ranges extended to "
                    "cover the identified values instead of moved onto them")
    ap.add_argument("--finetune-steps", type=int, default=0, help="fine-tune every policy for this many steps from "
                    "--checkpoint instead of training from scratch (0: from scratch)")
    ap.add_argument("--checkpoint", type=Path, default=REPO / "runs" / "cartpole_swingup_sac_ship" / "checkpoints" /
                    "latest.pt", help="the shipped policy's training checkpoint (`make models` writes it)")
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "bench_sysid_transfer")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    from robot_rl.transfer import TransferSettings, run_transfer, summarize, write_report

    a.work.mkdir(parents=True, exist_ok=True)
    times = {}
    t0 = time.perf_counter()
    bag = record(a.seed, a.record_s, a.work)
    times["record"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    subprocess.run([*CLI, "sysid", str(bag), "--env", ENV, "--out", str(a.work / "sysid"), "--base", TRAINING_RZ,
                    "--no-progress", *(["--widen"] if a.widen else [])], check=True, cwd=REPO)
    times["sysid"] = time.perf_counter() - t0
    fit = json.loads((a.work / "sysid" / "sysid.json").read_text())
    names = [p["name"] for p in fit["parameters"]]
    true = truth(a.seed, names)
    t0 = time.perf_counter()
    recentred = a.work / "sysid" / "randomization.yaml"
    jobs = {f"retrained_s{s}": (a.work / f"retrained_s{s}", recentred, s) for s in a.train_seeds}
    finetune = a.finetune_steps > 0
    if finetune and not a.checkpoint.is_file():
        raise SystemExit(f"--checkpoint {a.checkpoint}: no such file (scripts/make_models.sh cartpole_swingup_sac "
                         f"writes it)")
    jobs |= {f"control_s{s}": (a.work / f"control_s{s}", TRAINING_RZ, s) for s in a.train_seeds
             if finetune or s != RECIPE_SEED}
    extra = ["--set", f"train.init_from={a.checkpoint}", "--set", f"train.total_steps={a.finetune_steps}"] \
        if finetune else []
    todo = [(run, rz, s) for run, rz, s in jobs.values() if not (run / "model" / "policy.json").exists()]
    for i in range(0, len(todo), 2):  # two trainings at a time (torch_threads 1 each, 2 cores)
        procs = [(run, subprocess.Popen([*CLI, "train", "--config", RECIPE, "--set", f"env.randomization={rz}",
                                         "--set", f"seed={s}", "--set", "train.progress=false", *extra,
                                         "--run-dir", str(run)], cwd=REPO)) for run, rz, s in todo[i:i + 2]]
        for run, proc in procs:
            if proc.wait() != 0:
                raise SystemExit(f"training into {run} failed (exit {proc.returncode})")
            subprocess.run([*CLI, "export", str(run), "--out", str(run / "model")], check=True, cwd=REPO)
    times["retrain"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    models = {"shipped": MODEL, **{label: run / "model" for label, (run, _, _) in jobs.items()}}
    one = run_transfer(TransferSettings(models=tuple(models.values()), labels=tuple(models), samples=1, seed=a.seed,
                                        out_dir=a.work / "transfer_sample", progress=False))
    write_report(one, a.work / "transfer_sample")
    many = run_transfer(TransferSettings(models=tuple(models.values()), labels=tuple(models), samples=20, ros=False,
                                         out_dir=a.work / "transfer_20", progress=False))
    write_report(many, a.work / "transfer_20")
    times["transfer"] = time.perf_counter() - t0
    s1 = {e["label"]: e for e in one["models"]}
    s20 = {e["label"]: summarize(e) for e in many["models"]}
    nominal = s1["shipped"]["nominal"][0]["return"]
    rows = []
    for label in models:
        e = s1[label]
        rows.append((label, e["nominal"][0]["return"], e["python"][0]["return"], e["ros"][0].get("return"),
                     s20[label]["python_return"]["mean"], s20[label]["python_return"]["worst"]))
    by_label = {r[0]: r for r in rows}
    groups = {"re-centred profile (sysid)": [f"retrained_s{s}" for s in a.train_seeds],
              f"control: `{TRAINING_RZ}` again": [f"control_s{s}" if finetune or s != RECIPE_SEED else "shipped"
                                                 for s in a.train_seeds]}
    closed = {}
    for group, labels in groups.items():
        for where, i in (("Python env", 2), ("ROS loop", 3)):
            per_seed = [(by_label[k][i] - rows[0][i]) / (nominal - rows[0][i]) for k in labels]
            closed[(group, where)] = per_seed + [sum(per_seed) / len(per_seed)]
    ckpt_name = a.checkpoint.relative_to(REPO) if a.checkpoint.is_relative_to(REPO) else a.checkpoint
    lines = ["# System identification from a deployment log, then retraining: the gap on one reality sample", "",
             machine_header(), "", f"Command: `python bench/bench_sysid_transfer.py {' '.join(sys.argv[1:])}`; "
             "times [s]: " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()) + ".", "",
             f"Reality sample {a.seed}; {a.record_s:.0f} s of the shipped policy through the ROS 2 loop, recorded." +
             (f" Every policy fine-tuned {a.finetune_steps} steps from {ckpt_name}." if finetune else ""),
             "",
             "| parameter | drawn for the sample | identified +- std |", "|---|---|---|"]
    for p in fit["parameters"]:
        drawn = true.get(p["name"], float("nan"))
        lines.append(f"| `{p['name']}` | {drawn:.4g} | {p['value']:.4g} +- {p['std']:.2g} |")
    lines += [f"| `action_latency_steps` | {true['action_latency_steps']:.0f} | {fit['action_latency_steps']} |", "",
              "Re-simulation error (RMS, nominal -> fitted): " + "; ".join(
                  f"{j} {fit['error_before'][j]['position_rms']:.3g} -> {fit['error_after'][j]['position_rms']:.3g}"
                  for j in fit["error_before"]) + ".", "",
              "| policy | nominal return | sample, Python env | sample, ROS loop | 20 reality samples, Python env: "
              "mean (worst) |", "|---|---|---|---|---|"]
    for label, nom, py, ros, mean20, worst20 in rows:
        lines.append(f"| {label} | {nom:.1f} | {py:.1f} | {ros:.1f} | {mean20:.1f} ({worst20:.1f}) |")
    lines += ["", f"Share of the gap (nominal - shipped on the sample) closed, per training seed {a.train_seeds} and "
              "their mean (target >= 50 %, and more than the control):", "",
              "| retrained on | Python env | ROS loop |", "|---|---|---|"]
    for group in groups:
        lines.append(f"| {group} | " + " | ".join(
            ", ".join(f"{v:.0%}" for v in closed[(group, w)][:-1]) + f", **{closed[(group, w)][-1]:.0%}**"
            for w in ("Python env", "ROS loop")) + " |")
    lines.append("")
    text = "\n".join(lines)
    if a.out:
        a.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
