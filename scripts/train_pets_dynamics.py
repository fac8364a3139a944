"""Train the PETS cart-pole ensemble (robot_rl.algos.pets) and export it as a shipped dynamics model.

    .venv/bin/python scripts/train_pets_dynamics.py --config config/pets_cartpole_swingup.yaml \
        --out models/cartpole_pets_dynamics

Runs the project's PETS loop (``train_pets``: random episode, then refit + CEM-MPC episodes), wraps the final
ensemble so its outputs are in state units (``mean``: predicted delta ``x' - x`` of the physics state
``[slider m, hinge rad, slider_vel m/s, hinge_vel rad/s]``; ``logvar``: its log-variance in those units squared)
and exports it with ``robot_rl.export.onnx.export_ensemble`` (checked against hardware/cartpole.yaml). The action
input is the slider force [N] (actuator units, as PETS plans). The sidecar's metrics hold the PETS episode log and a
held-out one-step evaluation (``one_step_eval``, the same measure as tests/models/test_shipped_models.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch

EVAL_SEED_START = 10**9
"""Env seeds of the held-out evaluation / parity episodes (PETS itself uses seeds < 1e6)."""
EVAL_EPISODES, EVAL_STEPS = 10, 150
"""Held-out random-force episodes x steps (3 s at 50 Hz): 1500 transitions (parity needs >= 1000)."""


RAIL_FREE_M = 1.5
"""|slider| [m] below which the cart is clear of the rail end stops (+-1.8 m): contacts with the stops are rare in
the PETS data, so the headline one-step error is measured on transitions that start and end inside this range."""


def one_step_nrmse(pred_delta: np.ndarray, x: np.ndarray, x_next: np.ndarray) -> np.ndarray:
    """Per state dim: RMSE of the predicted delta / RMS of the true delta ``[nx]`` (zero-delta baseline = 1.0)."""
    true = x_next - x
    return np.sqrt(np.mean((pred_delta - true) ** 2, axis=0)) / np.sqrt(np.mean(true ** 2, axis=0))


def rail_free(x: np.ndarray, x_next: np.ndarray) -> np.ndarray:
    """Mask ``[N]`` of transitions with the cart inside +-RAIL_FREE_M before and after the step."""
    return (np.abs(x[:, 0]) < RAIL_FREE_M) & (np.abs(x_next[:, 0]) < RAIL_FREE_M)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="config/pets_cartpole_swingup.yaml", help="PetsConfig YAML")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    p.add_argument("--out", default="models/cartpole_pets_dynamics", help="artifact directory")
    p.add_argument("--profile", default="cartpole", help="robot profile the ensemble is checked against")
    args = p.parse_args(argv)

    from robot_rl.algos.pets import PetsConfig, train_pets
    from robot_rl.core.config import config_hash, load_config, to_dict
    from robot_rl.core.profile import load_profile
    from robot_rl.export.onnx import export_ensemble
    from robot_rl.train.pets_artifact import StateUnits, random_transitions

    cfg = load_config(PetsConfig, args.config, overrides=args.set)
    if cfg.prev_action:
        print(f"{args.config}: prev_action models need the previous command as an input; train with `robot-rl train "
              f"--config {args.config}` and export with `robot-rl export RUN --out DIR`", file=sys.stderr)
        return 2
    logs, model = train_pets(cfg, log=lambda e: print(e, flush=True))
    module = StateUnits(model.eval())
    # parity inputs and the held-out evaluation: fresh random-force episodes (seeds >= 1e9, never trained on)
    x, u, xn, _ = random_transitions(cfg.env_id, EVAL_EPISODES, EVAL_STEPS, EVAL_SEED_START)
    with torch.no_grad():
        mean, _ = module(torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(u, dtype=torch.float32))
    pred = mean.numpy().astype(np.float64).mean(axis=0)
    free = rail_free(x, xn)
    nrmse, nrmse_all = one_step_nrmse(pred[free], x[free], xn[free]), one_step_nrmse(pred, x, xn)
    state_names = ["slider", "hinge", "slider_vel", "hinge_vel"]
    metrics = {
        "pets_episodes": [dataclasses.asdict(e) for e in logs],
        "final_episode_return": logs[-1].env_return,
        "final_upright_fraction_last_second": logs[-1].upright_fraction_last_second,
        "one_step_eval": {"transitions": int(len(x)), "episodes": EVAL_EPISODES, "steps": EVAL_STEPS,
                          "seed_start": EVAL_SEED_START,
                          "actions": "uniform random force [N]", "measure": "RMSE(member-mean delta) / RMS(delta)",
                          "rail_free_m": RAIL_FREE_M, "rail_free_transitions": int(free.sum()),
                          "nrmse": dict(zip(state_names, nrmse.tolist())), "nrmse_mean": float(nrmse.mean()),
                          "nrmse_including_end_stops": dict(zip(state_names, nrmse_all.tolist())),
                          "zero_delta_baseline": 1.0},
    }
    profile = load_profile(args.profile)
    sim_dt = profile.control_period_s
    cmd = "python scripts/train_pets_dynamics.py " + " ".join(sys.argv[1:] if argv is None else argv)
    sc = export_ensemble(module, Path(args.out), state_names=state_names, action_names=list(profile.command_joints),
                         parity_inputs=(x, u), target="delta", action_units_="N", profile=profile,
                         env_id=cfg.env_id, algo="pets", config={"pets": to_dict(cfg), "command": cmd.strip()},
                         config_hash=config_hash(cfg), metrics=metrics, control_dt=sim_dt)
    print(f"wrote {args.out}: {sc['n_members']} members, parity {sc['checks']['parity']['max_abs_diff']:.2g}, "
          f"one-step nrmse {np.round(nrmse, 4).tolist()} (|slider| < {RAIL_FREE_M} m, {int(free.sum())} transitions; "
          f"with end-stop contacts {np.round(nrmse_all, 4).tolist()}; zero-delta baseline 1.0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
