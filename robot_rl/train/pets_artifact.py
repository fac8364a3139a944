"""Load a PETS ensemble from a ``robot-rl train`` run and export it for the robot.

    python -m robot_rl.train.pets_artifact runs/pets_x --out models/cartpole_pets_x [--profile cartpole]

Writes ``dynamics.onnx`` + ``dynamics.json`` with ``robot_rl.export.onnx.export_ensemble`` (the same artifact as
``scripts/train_pets_dynamics.py``: outputs in state units, ``mean`` = predicted delta ``x' - x`` of the physics state,
``logvar`` its log-variance; action = actuator command [N]; checked against the robot profile, parity on >= 1000
held-out random-force transitions) and ``ensemble.npz`` (``robot_rl.control.ensemble_cem.EnsembleParams``: the
weights for the torch-free numpy CEM planner).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from robot_rl.algos.pets_config import PetsConfig
from robot_rl.algos.pets_model import ProbabilisticEnsemble
from robot_rl.core.config import from_dict
from robot_rl.train.checkpoint import CheckpointError, load_checkpoint

PARITY_SEED_START = 10**9
"""Env seeds of the parity / held-out transitions (PETS training seeds are < 1e6)."""
PARITY_EPISODES, PARITY_STEPS = 10, 150
"""Random-force episodes x steps for parity (1500 transitions; export needs >= 1000)."""
NPZ_FILE = "ensemble.npz"


class StateUnits(torch.nn.Module):
    """Normalized delta -> delta in state units: ``(state [B, nx], force [B, nu]) -> (mean, logvar) [E, B, nx]``.

    For a ``prev_action`` model the state input is ``[x, u_prev]`` (``nx + nu``) and the prediction is for ``x``.
    """

    def __init__(self, model: ProbabilisticEnsemble):
        super().__init__()
        self.m = model

    def forward(self, state, action):
        if state.shape[-1] > self.m.nx:  # prev_action: state = [x, u_prev]
            action = torch.cat([state[..., self.m.nx:], action], dim=-1)
            state = state[..., :self.m.nx]
        xs = state.unsqueeze(0).expand(self.m.n_members, -1, -1)
        us = action.unsqueeze(0).expand(self.m.n_members, -1, -1)
        mean, logvar = self.m(xs, us)
        return self.m.out_mean + self.m.out_std * mean, logvar + 2 * torch.log(self.m.out_std)


def load_ensemble(path: str | Path) -> tuple[ProbabilisticEnsemble, PetsConfig, dict]:
    """``(model, config, meta)`` from a PETS run directory (``checkpoints/best.pt``, else ``latest.pt``) or a
    checkpoint file. ``CheckpointError`` names the file and what is wrong.
    """
    path = Path(path)
    if path.is_dir():
        found = [path / "checkpoints" / n for n in ("best.pt", "latest.pt") if (path / "checkpoints" / n).is_file()]
        if not found:
            raise CheckpointError(f"run directory {path} has no checkpoints/best.pt or checkpoints/latest.pt")
        path = found[0]
    payload = load_checkpoint(path)
    if payload.get("kind") != "pets_model":
        raise CheckpointError(f"checkpoint {path} is not a PETS ensemble (kind {payload.get('kind')!r})")
    try:
        e, meta = payload["ensemble"], payload["meta"]
        cfg = from_dict(PetsConfig, meta["config"], source=str(path))
        model = ProbabilisticEnsemble(int(e["nx"]), int(e["nu"]), e["angle_indices"], int(e["n_members"]),
                                      e["hidden"], e["activation"])
        model.load_state_dict(e["state_dict"])
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} has no usable ensemble: {type(exc).__name__}: {exc}") from None
    return model.eval(), cfg, meta


def random_transitions(env_id: str, episodes: int, steps: int, seed_start: int) -> tuple[np.ndarray, ...]:
    """Uniform random-force episodes (no randomization): ``x [N, nx]``, ``u [N, nu]`` (actuator units),
    ``x' [N, nx]``, ``u_prev [N, nu]`` (the previous command, 0 at an episode's start).
    """
    import robot_rl.envs as envs

    env = envs.make(env_id, max_episode_steps=steps)
    sim = env.unwrapped
    lo, hi = sim.model.actuator_ctrlrange[:, 0], sim.model.actuator_ctrlrange[:, 1]
    xs, us, xn, up = [], [], [], []
    try:
        for ep in range(episodes):
            rng = np.random.default_rng(seed_start + ep)
            env.reset(seed=seed_start + ep)
            up.append(np.zeros_like(lo))
            for k in range(steps):
                if k:
                    up.append(us[-1])
                x = sim.get_state()
                u = rng.uniform(lo, hi)
                _, _, terminated, truncated, _ = env.step((2 * (u - lo) / (hi - lo) - 1).astype(np.float32))
                xs.append(x)
                us.append(u)
                xn.append(sim.get_state())
                if terminated or truncated:
                    break
    finally:
        env.close()
    return np.asarray(xs), np.asarray(us), np.asarray(xn), np.asarray(up)


def export_run(run: str | Path, out_dir: str | Path, *, profile_name: str = "cartpole", parity_bound: float = 1e-4
               ) -> dict:
    """Export the ensemble of a PETS run (see module docstring); ``parity_bound``: largest torch-vs-onnxruntime
    difference allowed on mean and logvar (state units). Returns the sidecar.
    """
    from robot_rl.core.config import config_hash, to_dict
    from robot_rl.core.profile import load_profile
    from robot_rl.export.onnx import export_ensemble

    model, cfg, meta = load_ensemble(run)
    profile = load_profile(profile_name)
    x, u, xn, u_prev = random_transitions(cfg.env_id, PARITY_EPISODES, PARITY_STEPS, PARITY_SEED_START)
    module = StateUnits(model)
    s_in = np.hstack([x, u_prev]) if cfg.prev_action else x
    with torch.no_grad():
        mean, _ = module(torch.as_tensor(s_in, dtype=torch.float32), torch.as_tensor(u, dtype=torch.float32))
    pred = mean.numpy().astype(np.float64).mean(axis=0)
    true = xn - x
    nrmse = np.sqrt(np.mean((pred - true) ** 2, axis=0)) / np.sqrt(np.mean(true ** 2, axis=0))
    state_names = ["slider", "hinge", "slider_vel", "hinge_vel"][:model.nx] if model.nx == 4 else \
        [f"x{i}" for i in range(model.nx)]
    metrics = {"run_eval": meta.get("metrics", {}),
               "one_step_eval": {"transitions": int(len(x)), "seed_start": PARITY_SEED_START,
                                 "actions": "uniform random force [N]",
                                 "measure": "RMSE(member-mean delta) / RMS(delta)",
                                 "nrmse": dict(zip(state_names, nrmse.tolist())), "zero_delta_baseline": 1.0}}
    out_dir = Path(out_dir)
    input_names = state_names + ([f"prev_{j}" for j in profile.command_joints] if cfg.prev_action else [])
    sc = export_ensemble(module, out_dir, state_names=input_names, action_names=list(profile.command_joints),
                         output_names=state_names, parity_inputs=(s_in, u), target="delta", action_units_="N",
                         profile=profile,
                         env_id=cfg.env_id, algo="pets", config={"pets": to_dict(cfg), "run": str(run)},
                         config_hash=config_hash(cfg), metrics=metrics, control_dt=profile.control_period_s,
                         parity_bound=parity_bound)
    model.numpy_params().save(out_dir / NPZ_FILE)
    return sc


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run", type=Path, help="PETS run directory (robot-rl train, algo: pets) or checkpoint file")
    p.add_argument("--out", type=Path, required=True, help="artifact directory")
    p.add_argument("--profile", default="cartpole", help="robot profile the ensemble is checked against")
    p.add_argument("--parity-bound", type=float, default=1e-4, help="largest torch-vs-onnxruntime difference (1e-4)")
    args = p.parse_args(argv)
    try:
        sc = export_run(args.run, args.out, profile_name=args.profile, parity_bound=args.parity_bound)
    except CheckpointError as exc:
        print(f"pets_artifact: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: dynamics.onnx + dynamics.json ({sc['n_members']} members, parity "
          f"{sc['checks']['parity']['max_abs_diff']:.2g}) and {NPZ_FILE}; one-step nrmse "
          f"{sc['metrics']['one_step_eval']['nrmse']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
