"""Collect an episode dataset from a robot_rl env with a controller (Minari HDF5 layout, docs/datasets.md).

Controllers:
  random           uniform actions in [-1, 1]
  noisy-expert     scripted expert + Gaussian action noise (--noise) and random actions (--random-prob);
                   ArmReach: resolved-rate reach (damped least-squares Jacobian pseudo-inverse to a joint-velocity
                   target, torque = M(q) Kv (qd* - qd)); Reacher2: the same for the 2-link arm
  ilqr[:CONFIG]    receding-horizon iLQR on the robot's MJCF (default config/mpc_<robot>.yaml), + --noise
  policy:RUN_DIR   a trained policy (robot_rl.train.load_policy), deterministic, + --noise
Examples:
  robot-rl collect --env robot_rl/ArmReach-v0 --controller noisy-expert --episodes 200 --out data/arm_noisy
  robot-rl collect --env robot_rl/CartpoleSwingup-v0 --controller random --episodes 20 --out data/cp_random
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

HELP = "collect an episode dataset (random / noisy-expert / policy controller) with a progress bar"

Controller = Callable[[object, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class CollectConfig:
    """``robot-rl collect --config FILE`` (config/collect_*.yaml); command-line flags override it."""

    env: str
    """Env id, e.g. robot_rl/ArmReach-v0."""
    controller: str
    """random | noisy-expert | policy:RUN_DIR."""
    episodes: int
    """Number of episodes."""
    out: str
    """Dataset directory to create."""
    randomization: str | None = None
    """Randomization profile (sim/randomization/<name>.yaml); null = off."""
    seed: int = 0
    """Episode i uses env seed seed * 100000 + i."""
    noise: float = 0.3
    """Std of the Gaussian action noise [normalized action units]."""
    random_prob: float = 0.0
    """Probability of a uniformly random action per step."""
    max_steps: int | None = None
    """Cap on steps per episode (null: the env's time limit)."""
    dataset_id: str | None = None
    """Minari dataset id (null: robot_rl/<env>-<controller>-v0)."""

    def __post_init__(self):
        if self.episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {self.episodes}")
        if self.noise < 0 or not 0 <= self.random_prob <= 1:
            raise ValueError(f"noise must be >= 0 and random_prob in [0, 1], got {self.noise}, {self.random_prob}")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None, help="collect config YAML (config/collect_*.yaml)")
    p.add_argument("--env", help="env id, e.g. robot_rl/ArmReach-v0")
    p.add_argument("--controller", help="random | noisy-expert | ilqr[:MPC_CONFIG] | policy:RUN_DIR")
    p.add_argument("--episodes", type=int, help="number of episodes")
    p.add_argument("--out", help="dataset directory to create")
    p.add_argument("--randomization", help="randomization profile (sim/randomization/<name>.yaml)")
    p.add_argument("--seed", type=int, help="episode i uses env seed seed*100000 + i (default 0)")
    p.add_argument("--noise", type=float, help="std of Gaussian action noise, normalized units (default 0.3)")
    p.add_argument("--random-prob", type=float, help="probability of a uniform random action per step (default 0)")
    p.add_argument("--max-steps", type=int, help="cap on steps per episode")
    p.add_argument("--dataset-id", help="Minari dataset id (default robot_rl/<env>-<controller>-v0)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")


class ReachExpert:
    """Resolved-rate reach controller for an arm whose env tracks its achieved goal at a site: a gravity-compensated
    torque interface (ArmReach / Reacher2, site ``ee``) or delta joint position targets (PandaReach, the profile's
    ``ee_site``).

    ``v = clip_norm(k (goal - ee))`` [m/s], ``qd* = J^T (J J^T + lam I)^-1 v + N (kn (q_home - q))`` (null space
    posture). Torque: ``tau = M(q) kv (qd* - qd)``, action = tau / torque limit. Delta position targets: the servo
    (``tau = kp (target - q) - kd qd``) moves a joint at about ``kp / kd x offset`` rad/s, so the offset is
    ``qd* kd / kp`` and the action that offset over the env's ``action_scale``. Reads only the observation
    (measured joints + goal), like a controller on the robot.
    """

    def __init__(self, env, *, k: float = 4.0, kv: float = 40.0, kn: float = 1.0, lam: float = 1e-3,
                 v_max: float = 1.0):
        import mujoco

        u = env.unwrapped
        self.mj, self.u, self.m = mujoco, u, u.model
        self.d = mujoco.MjData(u.model)
        p = u.profile
        site = p.ee_site if p.command_interface == "position" and p.ee_site else "ee"
        self.sid = mujoco.mj_name2id(u.model, mujoco.mjtObj.mjOBJ_SITE, site)
        if self.sid < 0:
            raise ValueError(f"{type(u).__name__} has no site {site!r}: no scripted reach expert for this env")
        self.n = len(p.joint_names)
        self.half = (u.model.actuator_ctrlrange[:, 1] - u.model.actuator_ctrlrange[:, 0]) / 2.0
        self.qadr, self.dadr = u.joint_qpos_addresses, u.joint_qvel_addresses
        self.home = np.asarray(u.model.qpos0, dtype=np.float64)[self.qadr]
        self.position_rate = None  # delta position targets: action per unit joint speed [s/rad]
        if p.command_interface == "position":
            if getattr(u, "action", None) != "delta" or list(p.command_joints) != list(p.joint_names):
                raise ValueError(f"{type(u).__name__}: the reach expert drives position arms through delta targets "
                                 f"on every joint (task option action='delta')")
            self.home = np.asarray(p.standing_pose, dtype=np.float64)
            self.position_rate = np.asarray(p.kd, dtype=np.float64) / np.asarray(p.kp) / float(u.action_scale)
        else:
            from robot_rl.envs.arm import HOME

            if len(HOME) == self.n:
                self.home = HOME
        self.k, self.kv, self.kn, self.lam, self.v_max = k, kv, kn, lam, v_max
        self.M = np.zeros((u.model.nv, u.model.nv))
        self.jac = np.zeros((3, u.model.nv))

    def __call__(self, obs, rng: np.random.Generator) -> np.ndarray:
        mj, m, d, n = self.mj, self.m, self.d, self.n
        q = np.asarray(obs["observation"][:n], dtype=np.float64)
        qd = np.asarray(obs["observation"][n:2 * n], dtype=np.float64)
        d.qpos[self.qadr] = q
        mj.mj_kinematics(m, d)
        mj.mj_comPos(m, d)
        mj.mj_jacSite(m, d, self.jac, None, self.sid)
        J = self.jac[:, self.dadr]
        v = self.k * (np.asarray(obs["desired_goal"], dtype=np.float64) - d.site_xpos[self.sid])
        speed = np.linalg.norm(v)
        if speed > self.v_max:
            v *= self.v_max / speed
        Jp = J.T @ np.linalg.inv(J @ J.T + self.lam * np.eye(3))
        qd_des = Jp @ v + (np.eye(n) - Jp @ J) @ (self.kn * (self.home - q))
        if self.position_rate is not None:
            return np.clip(qd_des * self.position_rate, -1.0, 1.0)
        mj.mj_crb(m, d)  # the mass matrix: only the torque law needs it
        mj.mj_fullM(m, d, self.M)
        tau = self.M[np.ix_(self.dadr, self.dadr)] @ (self.kv * (qd_des - qd))
        return np.clip(tau / self.half, -1.0, 1.0)


class IlqrMpc:
    """Receding-horizon iLQR on the robot's MJCF (``robot_rl.control``), from an MPC config (``config/mpc_*.yaml``).

    Synchronous and deadline-free (data collection is offline): every step solves ``ilqr`` from the measured state
    warm-started with the previous plan shifted by one step; a new episode starts with ``warmup_iterations``.
    Full state feedback from the env's measured joints; the command is mapped back to a normalized action.
    """

    def __init__(self, env, config_path: str):
        from robot_rl.control import ilqr
        from robot_rl.control.factory import MpcConfig, build_mpc
        from robot_rl.core.config import load_config

        self.ilqr, self.u = ilqr, env.unwrapped
        self.cfg = load_config(MpcConfig, config_path)
        self.rt = build_mpc(self.cfg)
        if self.rt.profile.name != self.u.profile.name:
            raise ValueError(f"MPC config {config_path} is for robot {self.rt.profile.name!r}, env "
                             f"{type(self.u).__name__} is robot {self.u.profile.name!r}")
        self.U: np.ndarray | None = None

    def __call__(self, obs, rng: np.random.Generator) -> np.ndarray:
        from robot_rl.data.bags import command_to_action

        rt, il = self.rt, self.ilqr
        x = rt.state_from_joints(*self.u.measured_joints())
        if self.U is None or self.u.step_count == 0:  # new episode: cold start
            T = self.cfg.mpc.horizon
            U0 = 0.01 * np.where(np.isfinite(rt.dynamics.u_max), rt.dynamics.u_max, 1.0) * rng.standard_normal(
                (T, rt.dynamics.nu))
            sol = il.solve(rt.dynamics, rt.cost, x, U0, il.IlqrSettings(max_iterations=self.cfg.warmup_iterations))
        else:
            sol = il.solve(rt.dynamics, rt.cost, x, np.r_[self.U[1:], self.U[-1:]], self.cfg.ilqr)
        self.U = sol.U
        return command_to_action(rt.command_from_control(sol.U[0]), self.u.profile)


def make_controller(spec: str, env, *, noise: float, random_prob: float) -> tuple[Controller, dict]:
    """Controller callable ``act(obs, rng) -> action [-1, 1]`` and its provenance description."""
    n_act = env.action_space.shape[0]

    def random(obs, rng):
        return rng.uniform(-1.0, 1.0, size=n_act)

    if spec == "random":
        return random, {"controller": "random"}
    if spec == "noisy-expert":
        base = ReachExpert(env)
        info = {"controller": "noisy-expert", "expert": "resolved-rate reach", "noise_std": noise,
                "random_prob": random_prob}
    elif spec == "ilqr" or spec.startswith("ilqr:"):
        from robot_rl.core.assets import find_asset

        path = spec.partition(":")[2] or f"config/mpc_{env.unwrapped.profile.name}.yaml"
        base = IlqrMpc(env, str(find_asset(path)))
        info = {"controller": spec, "mpc_config": path, "noise_std": noise, "random_prob": random_prob}
    elif spec.startswith("policy:"):
        import torch

        from robot_rl.scale.envs import flatten_goal_obs
        from robot_rl.train import load_policy

        loaded = load_policy(spec.partition(":")[2])

        def base(obs, rng):
            with torch.no_grad():
                return loaded.module(torch.as_tensor(flatten_goal_obs(obs)).unsqueeze(0))[0].numpy()

        info = {"controller": spec, "policy_algo": loaded.algo, "policy_config_hash": loaded.config_hash,
                "noise_std": noise, "random_prob": random_prob}
    else:
        raise ValueError(f"unknown controller {spec!r}: use random, noisy-expert, ilqr[:MPC_CONFIG] or policy:RUN_DIR")

    def act(obs, rng):
        if random_prob > 0 and rng.random() < random_prob:
            return random(obs, rng)
        a = np.asarray(base(obs, rng), dtype=np.float64)
        return np.clip(a + noise * rng.standard_normal(n_act), -1.0, 1.0) if noise > 0 else a

    return act, info


def collect(env_id: str, controller: str, episodes: int, out: str, *, randomization: str | None = None,
            seed: int = 0, noise: float = 0.3, random_prob: float = 0.0, max_steps: int | None = None,
            dataset_id: str | None = None, progress: bool = True):
    """Collect ``episodes`` episodes into a new dataset directory ``out``; returns the written dataset's report."""
    from tqdm import tqdm

    from robot_rl.data.dataset import DatasetWriter, load_dataset, record_episode
    from robot_rl.envs import make
    from robot_rl.train.run_dir import code_version

    env = make(env_id, randomization=randomization)
    act, info = make_controller(controller, env, noise=noise, random_prob=random_prob)
    u = env.unwrapped
    name = env_id.split("/")[-1].rsplit("-v", 1)[0].lower()
    ctrl = controller.split(":")[0]
    meta = {"env_id": env_id, "randomization": randomization, "control_period_s": float(u.control_dt),
            "obs_names": list(getattr(u, "obs_names", [])), "robot": u.profile.name,
            "joint_names": list(u.profile.joint_names), "command_joints": list(u.profile.command_joints),
            "provenance": {**info, "code_version": code_version(), "seed": seed,
                           "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                           "command": "robot-rl collect"}}
    writer = DatasetWriter(out, dataset_id=dataset_id or f"robot_rl/{name}-{ctrl}-v0",
                           observation_space=env.observation_space, action_space=env.action_space,
                           robot_rl_metadata=meta, env_spec=getattr(env, "spec", None))
    successes = []
    with writer, tqdm(total=episodes, unit="ep", disable=not progress, desc=f"collect {env_id}") as bar:
        for i in range(episodes):
            ep = record_episode(env, act, seed=seed * 100_000 + i, max_steps=max_steps)
            writer.add(ep)
            if "is_success" in ep.infos:
                successes.append(bool(ep.infos["is_success"][-1]))
            bar.update(1)
            bar.set_postfix(steps=writer.meta["total_steps"],
                            success=f"{np.mean(successes):.2f}" if successes else "n/a")
    env.close()
    return load_dataset(out)


def resolve_config(args) -> CollectConfig:
    """Config file (if any) overridden by the flags given; errors name the missing or bad key."""
    from robot_rl.core.config import ConfigError, from_dict, load_yaml

    raw = load_yaml(args.config) if args.config else {}
    if not isinstance(raw, dict):
        raise ConfigError("expected a mapping at the top level", source=args.config)
    for f in dataclasses.fields(CollectConfig):
        value = getattr(args, f.name, None)
        if value is not None:
            raw[f.name] = value
    missing = [f"--{f.name}" for f in dataclasses.fields(CollectConfig)
               if f.default is dataclasses.MISSING and f.name not in raw]
    if missing:
        raise ConfigError(f"missing {', '.join(missing)} (give them as flags or in --config)",
                          source=args.config or "command line")
    return from_dict(CollectConfig, raw, source=args.config or "command line")


def run(args) -> int:
    cfg = resolve_config(args)
    try:
        ds = collect(cfg.env, cfg.controller, cfg.episodes, cfg.out, randomization=cfg.randomization,
                     seed=cfg.seed, noise=cfg.noise, random_prob=cfg.random_prob, max_steps=cfg.max_steps,
                     dataset_id=cfg.dataset_id, progress=not args.no_progress)
    except (ValueError, KeyError, FileExistsError) as exc:
        print(f"robot-rl collect: {exc}", file=sys.stderr)
        return 2
    print(ds.report.describe())
    print(f"wrote {cfg.out}: {len(ds.episodes)} episodes, {ds.n_steps} steps ({ds.dataset_id})")
    return 0
