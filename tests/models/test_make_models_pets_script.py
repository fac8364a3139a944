"""scripts/train_pets_dynamics.py (the cartpole_pets_dynamics recipe) end to end on a tiny PETS run: the artifact
loads through OnnxEnsemble against the cart-pole profile, its outputs are deltas in state units (the wrapper undoes
the ensemble's normalization), and the sidecar carries the PETS log, the held-out one-step evaluation and the
recipe command."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from robot_rl.core.profile import load_profile
from robot_rl.export.runtime import OnnxEnsemble

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "train_pets_dynamics.py"


def load_script():
    spec = importlib.util.spec_from_file_location("train_pets_dynamics", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_one_step_nrmse_and_rail_mask():
    mod = load_script()
    x = np.array([[0.0, 0.0, 0.0, 0.0], [1.6, 0.0, 0.0, 0.0], [1.4, 0.0, 0.0, 0.0]])
    xn = x + np.array([[0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4], [0.2, -0.2, 0.3, 0.4]])
    assert np.allclose(mod.one_step_nrmse(np.zeros((3, 4)), x, xn), 1.0)  # predicting no change
    assert np.allclose(mod.one_step_nrmse(xn - x, x, xn), 0.0)
    assert mod.rail_free(x, xn).tolist() == [True, False, False]  # 1.4 + 0.2 leaves the free range


def test_state_units_wrapper_undoes_normalization():
    from robot_rl.algos.pets_model import ProbabilisticEnsemble
    from robot_rl.train.pets_artifact import StateUnits

    torch.manual_seed(0)
    model = ProbabilisticEnsemble(4, 1, [1], 3, [16], "silu")
    model.out_mean.copy_(torch.tensor([0.1, -0.2, 0.3, 1.0]))
    model.out_std.copy_(torch.tensor([2.0, 3.0, 0.5, 4.0]))
    s, a = torch.randn(5, 4), torch.randn(5, 1)
    mean, logvar = StateUnits(model)(s, a)
    raw_mean, raw_logvar = model(s.expand(3, -1, -1), a.expand(3, -1, -1))
    assert mean.shape == (3, 5, 4)
    assert torch.allclose(mean, model.out_mean + model.out_std * raw_mean)
    assert torch.allclose(logvar, raw_logvar + 2 * torch.log(model.out_std))


def test_script_exports_a_loadable_ensemble(tmp_path):
    mod = load_script()
    out = tmp_path / "pets"
    assert mod.main(["--set", "episodes=1", "--set", "episode_steps=10", "--set", "train_steps=5",
                     "--set", "cem.num_samples=10", "--out", str(out)]) == 0
    ens = OnnxEnsemble(out, load_profile("cartpole"))
    sc = ens.sidecar
    assert ens.n_members == 5 and ens.target == "delta" and sc["action"]["units"] == "N"
    assert sc["robot"]["profile"] == "cartpole" and sc["control_dt"] == 0.02
    ev = sc["metrics"]["one_step_eval"]
    assert ev["transitions"] == mod.EVAL_EPISODES * mod.EVAL_STEPS and set(ev["nrmse"]) == set(ens.state_names)
    assert len(sc["metrics"]["pets_episodes"]) == 2
    assert sc["training"]["config"]["command"].startswith("python scripts/train_pets_dynamics.py --set episodes=1")
    mean, logvar = ens(np.zeros((2, 4)), np.zeros((2, 1)))
    assert mean.shape == (5, 2, 4) and np.isfinite(logvar).all()
