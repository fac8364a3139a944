"""Export a trained policy to ONNX for the robot: ``models/<name>/policy.onnx`` + ``policy.json``.

    robot-rl export runs/cartpole_sac --out models/cartpole_sac [--n-parity 1000] [--randomization NAME|none]
    robot-rl export runs/pets_cartpole --out models/cartpole_pets   # PETS run: dynamics.onnx + dynamics.json

The policy (observation normalization inside) and the action scaling to the robot profile's command limits go into
one graph. Parity observations come from the task's own distribution: deterministic rollouts of the run's policy in
its env with the run's randomization profile (held-out seeds). Checks (printed): ONNX full check, torch vs
onnxruntime parity, determinism, batch vs single rows, outputs finite and within limits, then a load through the
robot-side runtime (``OnnxPolicy``) with the env's robot profile. Exit status 0 only if every check passed.
"""

from __future__ import annotations

import sys
from pathlib import Path

HELP = "export a run's policy to models/<name>/policy.onnx + policy.json (parity, checker, sidecar)"

DEFAULT_SEED = 3_000_000_000


def add_arguments(p) -> None:
    p.add_argument("run_dir", type=Path, help="run directory (uses best.pt, else latest.pt) or checkpoint file")
    p.add_argument("--out", type=Path, required=True, help="artifact directory, e.g. models/cartpole_sac")
    p.add_argument("--n-parity", type=int, default=1000, help="parity observations from rollouts (>= 1000)")
    p.add_argument("--randomization", default=None,
                   help="randomization for the parity rollouts (name or path), 'none' = off; default: the run's")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"first rollout episode seed ({DEFAULT_SEED})")
    p.add_argument("--profile", default=None, help="robot profile (name or YAML path); default: the env's")
    p.add_argument("--parity-bound", type=float, default=1e-4,
                   help="largest torch-vs-onnxruntime difference allowed [robot command units] (1e-4)")


def collect_observations(module, env, n: int, seed: int):
    """``n`` observations ``[n, n_obs]`` from deterministic rollouts of ``module`` in ``env`` (episode seeds
    ``seed, seed + 1, ...``); returns (observations, episodes started).
    """
    import numpy as np
    import torch

    rows = []
    episode = 0
    obs, _ = env.reset(seed=seed)
    with torch.no_grad():
        while len(rows) < n:
            obs = np.asarray(obs, dtype=np.float32)
            rows.append(obs)
            action = module(torch.from_numpy(obs[None]))[0].numpy()
            obs, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                episode += 1
                obs, _ = env.reset(seed=seed + episode)
    return np.stack(rows), episode + 1


def check_env_scaling(env, profile) -> None:
    """The graph scales actions to the profile's command limits; the env scales to the MJCF ctrlrange. Refuse if
    they differ (the exported policy would command something else than it was trained with).
    """
    import numpy as np

    from robot_rl.core.profile import actuator_for_joint

    base = env.unwrapped
    if hasattr(base, "action_reference") and base.action_reference() is not None:
        return  # delta targets (measured + offset), clipped to the profile's command limits in the graph
    if hasattr(base, "action_map"):  # position-controlled: targets = standing pose + scale x action
        center, half = base.action_map()
        lo, hi = center - half, center + half
        low, high = np.asarray(profile.command_min), np.asarray(profile.command_max)
        if np.any(lo < low - 1e-9) or np.any(hi > high + 1e-9):
            raise ValueError(f"the env's action map reaches {lo.tolist()}..{hi.tolist()}, beyond profile "
                             f"{profile.name!r} command limits {low.tolist()}..{high.tolist()}")
        return
    ctrl = np.array([base.model.actuator_ctrlrange[actuator_for_joint(base.model, j)]
                     for j in profile.command_joints])
    limits = np.array([profile.command_min, profile.command_max]).T
    if not np.allclose(ctrl, limits, rtol=1e-9, atol=1e-12):
        raise ValueError(f"env actuator ctrlrange {ctrl.tolist()} differs from profile {profile.name!r} command "
                         f"limits {limits.tolist()} for {list(profile.command_joints)}")


def _is_pets_run(path: Path) -> bool:
    """A PETS run directory (config.yaml with ``algo: pets``); checkpoint files are told apart by their kind."""
    import yaml

    cfg = path / "config.yaml"
    if path.is_dir() and cfg.is_file():
        try:
            return (yaml.safe_load(cfg.read_text()) or {}).get("algo") == "pets"
        except (yaml.YAMLError, OSError, AttributeError):
            return False
    if path.is_file():
        from robot_rl.train.checkpoint import CheckpointError, load_checkpoint

        try:
            return load_checkpoint(path).get("kind") == "pets_model"
        except CheckpointError:
            return False
    return False


def _export_pets(args, fail) -> int:
    """PETS run: the dynamics ensemble -> dynamics.onnx + dynamics.json (+ ensemble.npz for the numpy planner)."""
    from robot_rl.export.onnx import ExportCheckError
    from robot_rl.train.checkpoint import CheckpointError
    from robot_rl.train.pets_artifact import NPZ_FILE, export_run

    print(f"export PETS dynamics ensemble from {args.run_dir} -> {args.out}")
    try:
        sc = export_run(args.run_dir, args.out, profile_name=args.profile or "cartpole",
                        parity_bound=args.parity_bound)
    except (CheckpointError, ExportCheckError) as exc:
        return fail(f"check failed, nothing written: {exc}")
    print(f"  parity torch vs onnxruntime ...... max |diff| {sc['checks']['parity']['max_abs_diff']:.3g}")
    print(f"  one-step nrmse ................... {sc['metrics']['one_step_eval']['nrmse']}")
    print(f"wrote {args.out / 'dynamics.onnx'}, {args.out / 'dynamics.json'} and {args.out / NPZ_FILE}")
    return 0


def run(args) -> int:
    from robot_rl.core.profile import load_profile
    from robot_rl.export.onnx import ExportCheckError, export_policy
    from robot_rl.export.runtime import ArtifactError, OnnxPolicy
    from robot_rl.scale.envs import make_env, obs_names_of
    from robot_rl.train.checkpoint import CheckpointError
    from robot_rl.train.policy import load_policy

    def fail(msg: str) -> int:
        print(f"robot-rl export: {msg}", file=sys.stderr)
        return 2

    if args.n_parity < 1000:
        return fail(f"--n-parity must be >= 1000, got {args.n_parity}")
    if _is_pets_run(args.run_dir):
        return _export_pets(args, fail)
    try:
        pol = load_policy(args.run_dir)
    except CheckpointError as exc:
        return fail(str(exc))
    if args.randomization is None:
        randomization = (pol.config.get("env") or {}).get("randomization")
    else:
        randomization = None if args.randomization.lower() == "none" else args.randomization
    env = make_env(pol.env_id, randomization=randomization, seed=args.seed)
    try:
        base = env.unwrapped
        profile = load_profile(args.profile) if args.profile else getattr(base, "profile", None)
        if profile is None:
            return fail(f"env {pol.env_id!r} has no robot profile; pass --profile")
        try:
            check_env_scaling(env, profile)
        except (ValueError, KeyError) as exc:
            return fail(f"profile {profile.name!r} does not fit env {pol.env_id!r}: {exc.args[0]}")
        n_obs = int(env.observation_space.shape[0])
        names = obs_names_of(env, n_obs)
        if list(names) != list(pol.obs_names):
            return fail(f"observation layout of {pol.env_id!r} changed since training: run has {pol.obs_names}, "
                        f"env has {list(names)}")
        builder = getattr(base, "observation_builder", None)
        unit_of = dict(zip(builder.names, builder.units)) if builder is not None else \
            dict(zip(getattr(base, "obs_names", ()), getattr(base, "obs_units", ())))
        units = [unit_of.get(n, "") for n in names]
        parity_obs, episodes = collect_observations(pol.module, env, args.n_parity, args.seed)
    finally:
        env.close()
    source = (f"{len(parity_obs)} observations from {episodes} deterministic episodes of {pol.env_id} "
              f"(randomization {randomization or 'off'}, seeds {args.seed}..{args.seed + episodes - 1})")
    print(f"export {pol.algo} policy of {pol.env_id} from {pol.checkpoint} -> {args.out}")
    print(f"parity set: {source}")
    try:
        sc = export_policy(pol.module, args.out, profile=profile, obs_names=names, obs_units=units,
                           parity_obs=parity_obs, env_id=pol.env_id, algo=pol.algo, config=pol.config,
                           config_hash=pol.config_hash, metrics=pol.metrics, name=args.out.name,
                           parity_source=source, parity_bound=args.parity_bound,
                           action_map=base.action_map() if hasattr(base, "action_map") else None,
                           action_reference=base.action_reference() if hasattr(base, "action_reference") else None)
    except ExportCheckError as exc:
        return fail(f"check failed, nothing written: {exc}")
    c = sc["checks"]
    print(f"  onnx.checker (full_check) ........ passed (opset {sc['model']['opset']})")
    print(f"  parity torch vs onnxruntime ...... max |diff| {c['parity']['max_abs_diff']:.3g} "
          f"<= {c['parity']['bound']:.3g} [{', '.join(sc['action']['units'])}] on {c['parity']['n']} observations")
    print(f"  deterministic (same input twice) . {'passed' if c['deterministic'] else 'FAILED'}")
    print(f"  batch vs single rows ............. max |diff| {c['batch_vs_single_max_abs_diff']:.3g}")
    print(f"  outputs finite / within limits ... {c['outputs_finite']} / {c['outputs_within_limits']}")
    try:
        OnnxPolicy(args.out, profile, obs_names=names)
    except ArtifactError as exc:
        return fail(f"the robot runtime refuses the written artifact: {exc}")
    print(f"  robot runtime load (OnnxPolicy) .. passed (profile {profile.name!r}, sha256 "
          f"{sc['model']['sha256'][:12]}...)")
    print(f"wrote {args.out / 'policy.onnx'} and {args.out / 'policy.json'}")
    return 0
