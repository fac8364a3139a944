"""PETS settings (``config/pets_*.yaml``): the ``PetsConfig`` dataclass and its checks.

Its own module so the model (``robot_rl.algos.pets_model``) and the loop (``robot_rl.algos.pets``) both read it
without importing each other; ``robot_rl.algos.pets.PetsConfig`` stays the name the registry, the docs and the
configs use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from robot_rl.control.mpc import MPCSettings
from robot_rl.control.sampling import SamplingSettings


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
