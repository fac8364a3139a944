"""export_ensemble / OnnxEnsemble on a tiny randomly initialized batched ensemble built here in plain torch."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F

from robot_rl.export.onnx import export_ensemble
from robot_rl.export.runtime import ArtifactError, OnnxEnsemble, PolicyInputError, sha256_bytes

STATE = ["x", "theta", "x_dot", "theta_dot"]
ACTION = ["force"]


class TinyEnsemble(torch.nn.Module):
    """E members, one hidden layer each, batched as [E, in, h] weights; soft-bounded log-variance (PETS)."""

    def __init__(self, n_members=5, n_state=4, n_act=1, hidden=32, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        n_in = n_state + n_act
        self.n_state = n_state
        self.w1 = torch.nn.Parameter(torch.randn(n_members, n_in, hidden, generator=g) / n_in ** 0.5)
        self.b1 = torch.nn.Parameter(torch.randn(n_members, 1, hidden, generator=g) * 0.1)
        self.w2 = torch.nn.Parameter(torch.randn(n_members, hidden, 2 * n_state, generator=g) / hidden ** 0.5)
        self.b2 = torch.nn.Parameter(torch.zeros(n_members, 1, 2 * n_state))
        self.register_buffer("max_logvar", torch.full((n_state,), 0.5))
        self.register_buffer("min_logvar", torch.full((n_state,), -10.0))

    def forward(self, state, action):
        x = torch.cat([state, action], dim=-1)  # [B, in]
        h = F.silu(torch.matmul(x, self.w1) + self.b1)  # broadcast -> [E, B, hidden]
        out = torch.matmul(h, self.w2) + self.b2  # [E, B, 2 n_state]
        mean, logvar = out[..., : self.n_state], out[..., self.n_state:]
        logvar = self.max_logvar - F.softplus(self.max_logvar - logvar)
        logvar = self.min_logvar + F.softplus(logvar - self.min_logvar)
        return mean, logvar


def inputs(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(0, 1, (n, 4)).astype(np.float32), rng.uniform(-1, 1, (n, 1)).astype(np.float32)


@pytest.fixture(scope="module")
def ensemble_dir(tmp_path_factory, profile):
    out = tmp_path_factory.mktemp("dyn") / "testbot_dynamics"
    module = TinyEnsemble()
    sc = export_ensemble(module, out, state_names=STATE, action_names=ACTION, parity_inputs=inputs(1000),
                         target="delta", control_dt=0.02, metrics={"val_nll": -1.5})
    return out, module, sc


def test_ensemble_roundtrip(ensemble_dir):
    out, module, sc = ensemble_dir
    model = onnx.load(str(out / "dynamics.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == ["state", "action"]
    assert [o.name for o in model.graph.output] == ["mean", "logvar"]
    ens = OnnxEnsemble(out)
    assert ens.n_members == 5 and ens.target == "delta" and ens.state_names == tuple(STATE)
    for b in (1, 7, 300):
        s, a = inputs(b, seed=b)
        mean, logvar = ens(s, a)
        with torch.no_grad():
            rm, rl = module(torch.from_numpy(s), torch.from_numpy(a))
        assert mean.shape == logvar.shape == (5, b, 4)
        assert np.max(np.abs(mean - rm.numpy())) < 1e-4 and np.max(np.abs(logvar - rl.numpy())) < 1e-4
        assert logvar.max() <= 0.5 + 1e-6 and logvar.min() >= -10.0 - 1e-6
    assert (mean.std(axis=0) > 0).all()  # members differ


def test_ensemble_sidecar(ensemble_dir):
    out, _, sc = ensemble_dir
    assert json.loads((out / "dynamics.json").read_text()) == sc
    assert sc["format"] == "robot_rl.dynamics/1" and sc["n_members"] == 5
    assert sc["model"]["sha256"] == sha256_bytes((out / "dynamics.onnx").read_bytes())
    assert sc["output"] == {"names": STATE, "target": "delta"} and sc["control_dt"] == 0.02
    assert sc["checks"]["deterministic"] and sc["checks"]["parity"]["max_abs_diff"] <= 1e-4
    assert sc["robot"] is None and sc["metrics"] == {"val_nll": -1.5}


def test_ensemble_with_profile_is_checked(tmp_path, profile):
    import dataclasses

    out = tmp_path / "dyn"
    export_ensemble(TinyEnsemble(n_act=2), out, state_names=STATE, action_names=["f1", "f2"],
                    parity_inputs=(inputs(1000)[0], np.zeros((1000, 2), np.float32)), profile=profile)
    OnnxEnsemble(out, profile)
    with pytest.raises(ArtifactError, match="control_period_s does not match"):
        OnnxEnsemble(out, dataclasses.replace(profile, control_period_s=0.05))


def test_ensemble_refusals(ensemble_dir, tmp_path):
    import shutil

    d = tmp_path / "copy"
    shutil.copytree(ensemble_dir[0], d)
    sc = json.loads((d / "dynamics.json").read_text())
    sc["n_members"] = 4
    (d / "dynamics.json").write_text(json.dumps(sc))
    with pytest.raises(ArtifactError, match=r"output 'mean' shape: expected \[4, 'batch', 4\], got \[5, 'batch', 4\]"):
        OnnxEnsemble(d)
    sc["n_members"] = 5
    sc["state"]["names"] = STATE[:3]
    (d / "dynamics.json").write_text(json.dumps(sc))
    with pytest.raises(ArtifactError, match=r"input 'state' shape: expected \['batch', 3\]"):
        OnnxEnsemble(d)
    shutil.copy(ensemble_dir[0] / "dynamics.json", d / "dynamics.json")
    data = bytearray((d / "dynamics.onnx").read_bytes())
    data[-10] ^= 0xFF
    (d / "dynamics.onnx").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="sha256 mismatch|not an ONNX model"):
        OnnxEnsemble(d)


def test_ensemble_input_guards(ensemble_dir):
    ens = OnnxEnsemble(ensemble_dir[0])
    s, a = inputs(3)
    s[1, 2] = np.nan
    with pytest.raises(PolicyInputError, match=r"state\[1, 2\] \(x_dot\)"):
        ens(s, a)
    with pytest.raises(PolicyInputError, match="expected"):
        ens(s[:, :3], a)


def test_pets_probabilistic_ensemble_exports(tmp_path):
    """The project's own PETS ensemble (EnsembleLinear: expand + baddbmm) exports with a dynamic batch axis."""
    from robot_rl.algos.pets_model import ProbabilisticEnsemble

    torch.manual_seed(0)
    model = ProbabilisticEnsemble(4, 1, [1], 3, [32, 32], "silu").eval()

    class PhysicalUnits(torch.nn.Module):
        """Normalized delta -> delta in state units (what an MPC consumes)."""

        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, state, action):
            mean, logvar = self.m(state, action)
            return self.m.out_mean + self.m.out_std * mean, logvar + 2 * torch.log(self.m.out_std)

    s, a = inputs(1000, seed=4)
    export_ensemble(PhysicalUnits(model), tmp_path / "pets", state_names=STATE, action_names=ACTION,
                    parity_inputs=(s, a), target="delta")
    ens = OnnxEnsemble(tmp_path / "pets")
    mean, _ = ens(s[:11], a[:11])
    with torch.no_grad():
        ref = PhysicalUnits(model)(torch.from_numpy(s[:11]), torch.from_numpy(a[:11]))[0].numpy()
    assert mean.shape == (3, 11, 4) and np.max(np.abs(mean - ref)) < 1e-4
