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
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robot_rl.control.costs import Cost
from robot_rl.control.dynamics import LearnedDynamics
from robot_rl.control.ensemble_cem import EnsembleCEM, EnsembleCEMSettings, EnsembleParams
from robot_rl.control.mpc import MPCController, MPCSettings, SamplingPlanner
from robot_rl.control.sampling import SamplingSettings
from robot_rl.core.assets import find_asset
from robot_rl.nets.ensemble import EnsembleLinear, EnsembleMLP


@dataclass(frozen=True)
class PetsConfig:
    """PETS settings."""

    algo: Literal["pets"] = "pets"
    """Algorithm selector (``robot-rl train`` picks PETS by it)."""
    env_id: str = "robot_rl/CartpoleSwingup-v0"
    """Environment id (robot_rl.envs.make)."""
    randomization: str | None = "default"
    """Domain-randomization profile of the training and evaluation envs (name in ``sim/randomization/`` or a path;
    null = off). Default as the SAC configs."""
    cost: str = "config/costs/cartpole_swingup.yaml"
    """Planner cost YAML over the physics state."""
    angle_indices: tuple[int, ...] = (1,)
    """State entries that are angles: fed to the network as (cos, sin)."""
    episode_steps: int = 150
    """Env steps per episode."""
    random_episodes: int = 1
    """Initial episodes with uniform random actions."""
    episodes: int = 8
    """MPC episodes after the random ones."""
    seed: int = 0
    """Seed of env resets, torch init, bootstraps and planner noise."""
    n_members: int = 5
    """Ensemble size."""
    hidden: tuple[int, ...] = (64, 64)
    """Hidden widths of each member."""
    activation: str = "silu"
    """Hidden activation."""
    lr: float = 2e-3
    """Adam learning rate."""
    weight_decay: float = 1e-5
    """Adam weight decay."""
    batch_size: int = 128
    """Bootstrap minibatch per member."""
    train_steps: int = 400
    """Gradient steps per refit (``train_epochs = 0``)."""
    train_epochs: int = 0
    """> 0: each refit trains in epochs instead (every member passes once per epoch over its own bootstrap resample
    of the training split, minibatches of ``batch_size``), at most ``train_epochs``, stopping early when no member's
    held-out MSE improved for ``patience`` epochs; every member keeps its weights of its best held-out epoch."""
    holdout_fraction: float = 0.1
    """Share of the transitions held out for early stopping (``train_epochs > 0``; at least 1 transition)."""
    patience: int = 5
    """Epochs without held-out improvement before a refit stops (``train_epochs > 0``)."""
    logvar_bounds_weight: float = 0.01
    """Weight of the learned log-variance bounds penalty."""
    propagation: Literal["ts1", "tsinf"] = "tsinf"
    """Trajectory sampling scheme."""
    n_particles: int = 5
    """Particles per control sequence (a multiple of n_members for tsinf)."""
    prev_action: bool = False
    """Model input ``[features(x), u_prev, u]``: the previously applied command (0 at an episode's start) next to this
    step's, so the model can represent the randomization's 0-1 step action latency (needs planner ensemble_cem)."""
    planner: Literal["ensemble_cem", "sampling"] = "ensemble_cem"
    """``ensemble_cem``: ``robot_rl.control.ensemble_cem.EnsembleCEM`` (float32 numpy forward, common random numbers
    over the CEM iterations); ``sampling``: ``SamplingPlanner`` on ``LearnedDynamics`` (torch forward per step)."""
    cem_plan: Literal["best", "mean"] = "best"
    """Plan an ``ensemble_cem`` replan returns: ``best`` sampled sequence or the final CEM ``mean`` (the PETS
    choice: robust to lucky single-particle draws)."""
    eval_episodes: int = 3
    """Evaluation episodes after every refit (``robot-rl train`` runs; 0 = none)."""
    eval_cem_iterations: int = 0
    """CEM iterations per replan in the evaluation episodes (0 = ``cem.iterations``): an evaluation can afford more
    planner compute than the training episodes' control loop."""
    eval_steps: int = 500
    """Steps per evaluation episode (500 = 10 s at 50 Hz, the SAC evaluation length)."""
    eval_seed_start: int = 1_000_000_000
    """First evaluation env seed (held out: training seeds are < 1e6); episode i uses ``eval_seed_start + i``."""
    stop_when_solved: bool = False
    """Stop after the first MPC episode with the pole up (cos > 0.95) for >= 90 % of its last second."""
    progress: bool = True
    """Progress bar on stderr in ``robot-rl train`` runs."""
    torch_threads: int = 1
    """torch intra-op threads (small batched MLPs: 1 avoids thread contention on a shared CPU)."""
    mpc: MPCSettings = field(default_factory=lambda: MPCSettings(horizon=25, replan_budget_s=60.0,
                                                                 replan_period_s=60.0))
    """Receding-horizon settings (budget generous: learning runs need not be real time)."""
    cem: SamplingSettings = field(default_factory=lambda: SamplingSettings(
        method="cem", num_samples=50, iterations=3, num_elites=6, noise_std=0.5))
    """CEM settings per replan."""

    def __post_init__(self):
        if self.propagation == "tsinf" and self.n_particles % self.n_members:
            raise ValueError(f"tsinf needs n_particles ({self.n_particles}) to be a multiple of n_members "
                             f"({self.n_members})")
        if self.n_members < 1 or self.random_episodes < 1 or self.episode_steps < 1 or self.n_particles < 1:
            raise ValueError("n_members, random_episodes, episode_steps and n_particles must be >= 1")
        if self.eval_cem_iterations < 0:
            raise ValueError(f"eval_cem_iterations must be >= 0 (0 = cem.iterations), got {self.eval_cem_iterations}")
        if self.episodes < 0 or self.eval_episodes < 0 or self.eval_steps < 1:
            raise ValueError("episodes and eval_episodes must be >= 0 and eval_steps >= 1")
        if self.planner == "ensemble_cem" and (self.cem.num_samples * self.n_particles) % self.n_members:
            raise ValueError(f"planner ensemble_cem needs cem.num_samples x n_particles "
                             f"({self.cem.num_samples} x {self.n_particles}) to be a multiple of n_members "
                             f"({self.n_members})")
        if self.prev_action and self.planner != "ensemble_cem":
            raise ValueError("prev_action needs planner ensemble_cem (the sampling planner's model takes u only)")
        if self.planner == "ensemble_cem" and self.cem.method != "cem":
            raise ValueError(f"planner ensemble_cem runs CEM only, got cem.method {self.cem.method!r}")
        if self.train_epochs < 0 or self.patience < 1 or not 0.0 < self.holdout_fraction < 0.5:
            raise ValueError(f"train_epochs must be >= 0, patience >= 1 and 0 < holdout_fraction < 0.5, got "
                             f"{self.train_epochs}, {self.patience}, {self.holdout_fraction}")
        if self.eval_seed_start < 1_000_000:
            raise ValueError(f"eval_seed_start must be >= 1e6 (training seeds are below), got {self.eval_seed_start}")


# --------------------------------------------------------------------------- losses (pure functions)


def soft_clamp_logvar(raw: torch.Tensor, min_logvar: torch.Tensor, max_logvar: torch.Tensor) -> torch.Tensor:
    """Smoothly bound a log-variance between ``min_logvar`` and ``max_logvar`` (PETS appendix; MBRL-Lib)."""
    lv = max_logvar - F.softplus(max_logvar - raw)
    return min_logvar + F.softplus(lv - min_logvar)


def gaussian_nll(mean: torch.Tensor, logvar: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over everything of ``1/2 [(target - mean)^2 exp(-logvar) + logvar]`` (constant dropped)."""
    return 0.5 * ((target - mean) ** 2 * torch.exp(-logvar) + logvar).mean()


# --------------------------------------------------------------------------- model


class ProbabilisticEnsemble(nn.Module):
    """Ensemble of Gaussian delta models with input/output normalization. Shapes: state ``[.., nx]``, ``[.., nu]``."""

    def __init__(self, nx: int, nu: int, angle_indices, n_members: int, hidden, activation: str):
        super().__init__()
        self.nx, self.nu, self.n_members = nx, nu, n_members
        self.angles = list(angle_indices)
        self.others = [i for i in range(nx) if i not in self.angles]
        n_in = len(self.others) + 2 * len(self.angles) + nu
        self.net = EnsembleMLP(n_members, n_in, 2 * nx, hidden, activation)
        self.min_logvar = nn.Parameter(-10.0 * torch.ones(nx))
        self.max_logvar = nn.Parameter(0.5 * torch.ones(nx))
        for name, n in (("in_mean", n_in), ("in_std", n_in), ("out_mean", nx), ("out_std", nx)):
            self.register_buffer(name, torch.zeros(n) if "mean" in name else torch.ones(n))

    def features(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        a = x[..., self.angles]
        return torch.cat([x[..., self.others], torch.cos(a), torch.sin(a), u], dim=-1)

    def fit_normalizers(self, X: torch.Tensor, U: torch.Tensor, X_next: torch.Tensor) -> None:
        f, d = self.features(X, U), X_next - X
        self.in_mean.copy_(f.mean(0))
        self.in_std.copy_(f.std(0).clamp_min(1e-6))
        self.out_mean.copy_(d.mean(0))
        self.out_std.copy_(d.std(0).clamp_min(1e-6))

    def forward(self, x: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [E, B, nx]``, ``u [E, B, nu]`` -> normalized delta mean and soft-clamped log-variance ``[E, B, nx]``."""
        out = self.net((self.features(x, u) - self.in_mean) / self.in_std)
        mean, raw = out[..., : self.nx], out[..., self.nx:]
        return mean, soft_clamp_logvar(raw, self.min_logvar, self.max_logvar)

    def loss(self, x, u, x_next) -> torch.Tensor:
        """Gaussian NLL of the normalized delta plus the log-variance bound penalty (weight applied by caller)."""
        mean, logvar = self(x, u)
        return gaussian_nll(mean, logvar, (x_next - x - self.out_mean) / self.out_std)

    @torch.no_grad()
    def sample_next(self, x: torch.Tensor, u: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Sample ``x' [E, B, nx]`` (member e on row block e)."""
        mean, logvar = self(x, u)
        eps = torch.randn(mean.shape, generator=gen, dtype=mean.dtype)
        return x + self.out_mean + self.out_std * (mean + torch.exp(0.5 * logvar) * eps)

    @torch.no_grad()
    def numpy_params(self) -> EnsembleParams:
        """The weights as float32 numpy (``robot_rl.control.ensemble_cem``: torch-free forward and CEM planner)."""
        lin = [m for m in self.net.net if isinstance(m, EnsembleLinear)]

        def f32(t):
            return t.detach().cpu().numpy().astype(np.float32).copy()

        return EnsembleParams(weights=tuple(f32(m.weight) for m in lin), biases=tuple(f32(m.bias) for m in lin),
                              activation=self.net.activation, angle_indices=tuple(self.angles), nx=self.nx,
                              nu=self.nu, in_mean=f32(self.in_mean), in_std=f32(self.in_std),
                              out_mean=f32(self.out_mean), out_std=f32(self.out_std),
                              min_logvar=f32(self.min_logvar), max_logvar=f32(self.max_logvar))

    @torch.no_grad()
    def disagreement(self, x: np.ndarray, u: np.ndarray) -> float:
        """Epistemic disagreement at one (x, u): variance over members of the mean delta, averaged over dims."""
        xt = torch.as_tensor(x, dtype=torch.float32).expand(self.n_members, 1, -1)
        ut = torch.as_tensor(u, dtype=torch.float32).expand(self.n_members, 1, -1)
        mean, _ = self(xt, ut)
        return float(mean.var(dim=0).mean())


def fit(model: ProbabilisticEnsemble, data: dict[str, np.ndarray], cfg: PetsConfig, opt: torch.optim.Optimizer,
        gen: torch.Generator) -> float:
    """Refit on the transitions ``data`` (``x [N, nx]``, ``u [N, nu]``, ``x_next [N, nx]``): ``cfg.train_steps``
    bootstrap minibatch steps per member, or with ``cfg.train_epochs > 0`` epochs with held-out early stopping
    (:func:`fit_epochs`). Returns the last training loss.
    """
    X, U, Xn = (torch.as_tensor(data[k], dtype=torch.float32) for k in ("x", "u", "x_next"))
    model.fit_normalizers(X, U, Xn)
    if cfg.train_epochs > 0:
        return fit_epochs(model, X, U, Xn, cfg, opt, gen)
    n, E = len(X), model.n_members
    loss = torch.zeros(())
    for _ in range(cfg.train_steps):
        idx = torch.randint(0, n, (E, min(cfg.batch_size, n)), generator=gen)  # with replacement: bootstrap
        loss = _step(model, X[idx], U[idx], Xn[idx], cfg, opt)
    return float(loss.detach())


def _step(model: ProbabilisticEnsemble, x, u, x_next, cfg: PetsConfig, opt: torch.optim.Optimizer) -> torch.Tensor:
    """One Adam step on member-stacked minibatches ``[E, B, ..]``: NLL plus the log-variance bound penalty."""
    loss = model.loss(x, u, x_next) + cfg.logvar_bounds_weight * (model.max_logvar.sum() - model.min_logvar.sum())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss


def fit_epochs(model: ProbabilisticEnsemble, X: torch.Tensor, U: torch.Tensor, Xn: torch.Tensor, cfg: PetsConfig,
               opt: torch.optim.Optimizer, gen: torch.Generator) -> float:
    """Epoch training with early stopping (``PetsConfig.train_epochs``): a random ``holdout_fraction`` of the
    transitions is held out; each member trains on its own bootstrap resample of the rest; after every epoch the
    per-member MSE of the normalized mean delta on the held-out set decides which members improved (their weights
    are snapshot). Stops after ``patience`` epochs without any improvement; restores every member's best weights.
    Returns the last training loss.
    """
    n, E = len(X), model.n_members
    n_hold = max(1, int(round(cfg.holdout_fraction * n))) if n > 1 else 0
    perm = torch.randperm(n, generator=gen)
    hold, train = perm[:n_hold], perm[n_hold:]
    boot = train[torch.randint(0, len(train), (E, len(train)), generator=gen)]  # [E, n_train], with replacement
    members = [p for p in model.net.parameters() if p.dim() >= 1 and p.shape[0] == E]
    best_w = [p.detach().clone() for p in members]
    with torch.no_grad():
        best = _holdout_mse(model, X, U, Xn, hold)
    since, loss, B = 0, torch.zeros(()), min(cfg.batch_size, len(train))
    for _ in range(cfg.train_epochs):
        order = torch.gather(boot, 1, torch.argsort(torch.rand(boot.shape, generator=gen), dim=1))
        for i in range(0, len(train) - B + 1, B):
            idx = order[:, i:i + B]
            loss = _step(model, X[idx], U[idx], Xn[idx], cfg, opt)
        if n_hold == 0:  # a single transition: nothing to hold out, no early stopping
            continue
        with torch.no_grad():
            mse = _holdout_mse(model, X, U, Xn, hold)
            better = mse < best
            if bool(better.any()):
                for p, b in zip(members, best_w):
                    b[better] = p[better]
                best = torch.where(better, mse, best)
                since = 0
            else:
                since += 1
        if since >= cfg.patience:
            break
    if n_hold:
        with torch.no_grad():
            for p, b in zip(members, best_w):
                p.copy_(b)
    return float(loss.detach())


def _holdout_mse(model: ProbabilisticEnsemble, X, U, Xn, hold: torch.Tensor) -> torch.Tensor:
    """Per-member MSE ``[E]`` of the normalized mean delta on the rows ``hold``."""
    x, u, xn = X[hold], U[hold], Xn[hold]
    E = model.n_members
    mean, _ = model(x.expand(E, -1, -1), u.expand(E, -1, -1))
    return ((mean - (xn - x - model.out_mean) / model.out_std) ** 2).mean(dim=(1, 2))


def make_predictor(model: ProbabilisticEnsemble, propagation: str, gen: torch.Generator):
    """Numpy particle predictor ``[P, N, nx], [P, N, nu] -> [P, N, nx]`` for ``LearnedDynamics``."""
    E = model.n_members

    def predict(X: np.ndarray, U: np.ndarray) -> np.ndarray:
        P, N, nx = X.shape
        x = torch.as_tensor(X, dtype=torch.float32).reshape(P * N, nx)
        u = torch.as_tensor(np.array(np.broadcast_to(U, (P, N, U.shape[-1])), dtype=np.float32),
                            dtype=torch.float32).reshape(P * N, -1)
        if propagation == "tsinf" and P % E == 0:
            # particle p -> member p mod E: rows [p, n] with p = k E + e land in block e
            xb = x.reshape(P // E, E, N, nx).transpose(0, 1).reshape(E, -1, nx)
            ub = u.reshape(P // E, E, N, -1).transpose(0, 1).reshape(E, (P // E) * N, -1)
            out = model.sample_next(xb, ub, gen).reshape(E, P // E, N, nx).transpose(0, 1).reshape(P, N, nx)
            return out.numpy().astype(np.float64)
        # ts1 (or particles not divisible by E): a fresh random member per row and step
        rows = P * N
        perm = torch.randperm(rows, generator=gen)
        pad = (-rows) % E
        idx = torch.cat([perm, perm[:pad]])
        out = model.sample_next(x[idx].reshape(E, -1, nx), u[idx].reshape(E, -1, u.shape[-1]), gen).reshape(-1, nx)
        res = torch.empty_like(x)
        res[idx[:rows]] = out[:rows]
        return res.reshape(P, N, nx).numpy().astype(np.float64)

    return predict


# --------------------------------------------------------------------------- loop


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
