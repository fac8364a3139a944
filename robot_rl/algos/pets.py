"""PETS: probabilistic ensemble dynamics + trajectory sampling + CEM MPC (Chua et al. 2018, "Deep Reinforcement
Learning in a Handful of Trials using Probabilistic Dynamics Models").

Loop: collect ``random_episodes`` with uniform random actions, then repeat { refit the ensemble on all transitions;
run one episode with CEM MPC planning on the ensemble }. Pieces:

* Model: ``n_members`` MLPs (``robot_rl.nets.ensemble.EnsembleMLP``, one batched matmul per layer), each predicting
  a Gaussian over the normalized state delta ``(x' - x - mu_d) / sigma_d`` from normalized inputs
  ``[features(x), u]`` (angles enter as cos/sin). The log-variance is soft-clamped between learned bounds
  (PETS / MBRL-Lib): ``lv = max - softplus(max - lv); lv = min + softplus(lv - min)``, with the bounds regularized
  by ``0.01 (sum max - sum min)``. Loss: Gaussian NLL (``gaussian_nll``); each member trains on its own bootstrap
  minibatches.
* Trajectory sampling (``propagation``): ``ts1`` — every particle picks a random member at every step;
  ``tsinf`` — particle p keeps member ``p mod E`` for the whole horizon (members are exchangeable random inits, so a
  fixed assignment is a random one). Next states are sampled from the member's Gaussian (aleatoric noise).
* Planning: ``robot_rl.control.sampling`` CEM on ``LearnedDynamics`` (particles = scenarios, expected cost), the
  planner cost is a ``robot_rl.control.costs`` YAML (the same as MuJoCo-model MPC), receding horizon through
  ``robot_rl.control.mpc.MPCController`` (warm start by shifting).
* Epistemic disagreement per env step: variance over members of the predicted mean delta (normalized units,
  averaged over state dims) at the executed (x, u).

The model state is the env's physics state ``[qpos, qvel]`` (``env.unwrapped.get_state()``): on a robot the same
vector comes from the measured joint positions and velocities.

This module is the loop (episodes, CEM-MPC controller, evaluation); the settings are ``robot_rl.algos.pets_config``
(``PetsConfig``, also importable from here), the model, its losses and its fit ``robot_rl.algos.pets_model``.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np
import torch

from robot_rl.algos.pets_config import PetsConfig
from robot_rl.algos.pets_model import ProbabilisticEnsemble, fit, make_predictor
from robot_rl.control.costs import Cost
from robot_rl.control.dynamics import LearnedDynamics
from robot_rl.control.ensemble_cem import EnsembleCEM, EnsembleCEMSettings
from robot_rl.control.mpc import MPCController, SamplingPlanner
from robot_rl.core.assets import find_asset


@dataclass
class EpisodeLog:
    """One training episode. ``env_steps``: training transitions collected so far (this episode included)."""

    episode: int
    kind: str
    env_return: float
    final_cos: float
    upright_fraction_last_second: float
    mean_disagreement: float
    model_loss: float
    wall_s: float
    env_steps: int = 0


@dataclass
class EvalLog:
    """Evaluation of the model refit on ``env_steps`` training transitions (``refits`` refits so far): CEM-MPC
    episodes of ``PetsConfig.eval_steps`` on the held-out seeds, not added to the data.
    """

    refits: int
    env_steps: int
    returns: list[float]
    return_mean: float
    return_std: float
    return_min: float
    wall_s: float


def run_episode(env, policy, steps: int, seed: int, model: ProbabilisticEnsemble | None, angle_index: int,
                data: dict[str, list], prev_action: bool = False) -> tuple[float, list[float], list[float]]:
    """One episode; ``policy(x, t_s) -> u`` in actuator units. Appends transitions to ``data`` (``u`` stored as
    ``[u_prev, u]`` with ``prev_action``, ``u_prev = 0`` at the start).
    """
    sim = env.unwrapped
    env.reset(seed=seed)
    lo, hi = sim.model.actuator_ctrlrange[:, 0], sim.model.actuator_ctrlrange[:, 1]
    ret, cos, dis = 0.0, [], []
    u_prev = np.zeros_like(lo)
    for k in range(steps):
        x = sim.get_state()
        u = np.clip(policy(x, k * sim.control_dt), lo, hi)
        _, r, terminated, truncated, info = env.step((2 * (u - lo) / (hi - lo) - 1).astype(np.float32))
        x_next = sim.get_state()
        if info.get("physics_error"):
            break
        u_in = np.concatenate([u_prev, u]) if prev_action else u
        u_prev = u
        data["x"].append(x)
        data["u"].append(u_in)
        data["x_next"].append(x_next)
        if model is not None:
            dis.append(model.disagreement(x, u_in))
        ret += r
        cos.append(float(np.cos(x_next[angle_index])))
        if terminated:
            break
    return ret, cos, dis


def make_controller(model: ProbabilisticEnsemble, cfg: PetsConfig, sim, cost: Cost, *, gen: torch.Generator,
                    seed: int) -> MPCController:
    """The CEM-MPC controller PETS acts with (``cfg.planner``), planning on ``model`` in actuator units."""
    nx, nu = sim.model.nq + sim.model.nv, sim.model.nu
    lo, hi = sim.model.actuator_ctrlrange[:, 0], sim.model.actuator_ctrlrange[:, 1]
    if cfg.planner == "ensemble_cem":
        planner = EnsembleCEM(model.numpy_params(), cost, EnsembleCEMSettings(cfg.cem, cfg.propagation,
                                                                              cfg.n_particles, cfg.prev_action,
                                                                              cfg.cem_plan),
                              dt=sim.control_dt, u_min=lo, u_max=hi, rng=np.random.default_rng(seed))
    else:
        dyn = LearnedDynamics(make_predictor(model, cfg.propagation, gen), nx, nu, sim.control_dt,
                              n_particles=cfg.n_particles, u_min=lo, u_max=hi)
        planner = SamplingPlanner(dyn, cost, cfg.cem, rng=np.random.default_rng(seed))
    return MPCController(planner, dataclasses.replace(cfg.mpc, control_period_s=sim.control_dt))


def mpc_policy(mpc: MPCController):
    """``policy(x, t_s) -> u``: replan from every state, then act (an ``EnsembleCEM`` is told the command applied)."""
    planner = mpc.planner

    def policy(x, t):
        mpc.replan(x, t)
        u = mpc.action(x, t)
        if hasattr(planner, "last_action"):
            planner.last_action = np.clip(u, planner.u_min, planner.u_max)
        return u

    return policy


def eval_config(cfg: PetsConfig) -> PetsConfig:
    """The settings evaluation episodes plan with: ``cfg``, ``cem.iterations = eval_cem_iterations`` when set."""
    if not cfg.eval_cem_iterations:
        return cfg
    return dataclasses.replace(cfg, cem=dataclasses.replace(cfg.cem, iterations=cfg.eval_cem_iterations))


def evaluate(model: ProbabilisticEnsemble, cfg: PetsConfig, env, cost: Cost, gen: torch.Generator,
             refits: int, first: int = 0) -> list[float]:
    """Returns of the CEM-MPC episodes ``i = first .. cfg.eval_episodes - 1`` of ``cfg.eval_steps`` on seeds
    ``eval_seed_start + i`` (planner seeds depend on ``refits`` and i, so episodes can be added later: ``first``);
    nothing is added to the training data.
    """
    angle = cfg.angle_indices[0] if cfg.angle_indices else 0
    cfg = eval_config(cfg)
    rets = []
    for i in range(first, cfg.eval_episodes):
        mpc = make_controller(model, cfg, env.unwrapped, cost, gen=gen, seed=cfg.eval_seed_start + 7919 * refits + i)
        ret, _, _ = run_episode(env, mpc_policy(mpc), cfg.eval_steps, cfg.eval_seed_start + i, None, angle,
                                {"x": [], "u": [], "x_next": []}, cfg.prev_action)
        rets.append(float(ret))
    return rets


def train_pets(cfg: PetsConfig, *, log=print, callback=None, on_refit=None, evaluate_every_refit: bool = False
               ) -> tuple[list[EpisodeLog], ProbabilisticEnsemble]:
    """Run the PETS loop; returns per-episode logs and the final model (refit on all the data).

    ``callback(event)`` gets every :class:`EpisodeLog` and, with ``evaluate_every_refit``, an :class:`EvalLog` after
    every refit (before the MPC episode that follows it, and after the final refit). ``log`` gets the same events.
    ``on_refit(model)`` runs after every refit (and its evaluation), e.g. to checkpoint.
    """
    import robot_rl.envs as envs

    torch.set_num_threads(cfg.torch_threads)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    eval_gen = torch.Generator().manual_seed(cfg.seed + 12345)  # own stream: training is the same with or without
    rng = np.random.default_rng(cfg.seed)
    env = envs.make(cfg.env_id, randomization=cfg.randomization, seed=cfg.seed, max_episode_steps=cfg.episode_steps)
    eval_env = (envs.make(cfg.env_id, randomization=cfg.randomization, seed=cfg.eval_seed_start,
                          max_episode_steps=cfg.eval_steps) if evaluate_every_refit and cfg.eval_episodes else None)
    sim = env.unwrapped
    nx, nu = sim.model.nq + sim.model.nv, sim.model.nu
    cost = Cost.from_yaml(find_asset(cfg.cost))
    model = ProbabilisticEnsemble(nx, 2 * nu if cfg.prev_action else nu, cfg.angle_indices, cfg.n_members,
                                  cfg.hidden, cfg.activation)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    data: dict[str, list] = {"x": [], "u": [], "x_next": []}
    lo, hi = sim.model.actuator_ctrlrange[:, 0], sim.model.actuator_ctrlrange[:, 1]
    logs: list[EpisodeLog] = []
    angle = cfg.angle_indices[0] if cfg.angle_indices else 0
    per_second = int(round(1.0 / sim.control_dt))
    t_start = time.perf_counter()
    refits = 0

    def emit(event):
        log(event)
        if callback is not None:
            callback(event)

    def refit() -> float:
        nonlocal refits
        loss = fit(model, {k: np.asarray(v) for k, v in data.items()}, cfg, opt, gen)
        refits += 1
        if eval_env is not None:
            rets = evaluate(model, cfg, eval_env, cost, eval_gen, refits)
            emit(EvalLog(refits, len(data["x"]), rets, float(np.mean(rets)), float(np.std(rets)),
                         float(np.min(rets)), time.perf_counter() - t_start))
        if on_refit is not None:
            on_refit(model)
        return loss

    try:
        for ep in range(cfg.random_episodes + cfg.episodes):
            t0 = time.perf_counter()
            seed = cfg.seed * 1000 + ep
            if ep < cfg.random_episodes:
                ret, cos, dis = run_episode(env, lambda x, t: rng.uniform(lo, hi), cfg.episode_steps, seed, None,
                                            angle, data, cfg.prev_action)
                kind, loss = "random", float("nan")
            else:
                loss = refit()
                mpc = make_controller(model, cfg, sim, cost, gen=gen, seed=seed)
                ret, cos, dis = run_episode(env, mpc_policy(mpc), cfg.episode_steps, seed, model, angle, data,
                                            cfg.prev_action)
                kind = "mpc"
            cos_arr = np.asarray(cos) if cos else np.array([np.nan])
            logs.append(EpisodeLog(ep, kind, float(ret), float(cos_arr[-1]),
                                   float(np.mean(cos_arr[-per_second:] > 0.95)),
                                   float(np.mean(dis)) if dis else float("nan"), loss, time.perf_counter() - t0,
                                   len(data["x"])))
            emit(logs[-1])
            if cfg.stop_when_solved and kind == "mpc" and logs[-1].upright_fraction_last_second >= 0.9:
                break
        refit()  # the returned model has seen every transition
    finally:
        env.close()
        if eval_env is not None:
            eval_env.close()
    return logs, model
