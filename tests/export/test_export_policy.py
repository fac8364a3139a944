"""export_policy: graph contract, parity, checks, sidecar contents, atomic files, failing checks write nothing."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from robot_rl.export.onnx import ExportCheckError, export_policy
from robot_rl.export.runtime import OnnxPolicy, profile_digest, sha256_bytes


def test_graph_io_and_checker(exported):
    out, _, _ = exported
    model = onnx.load(str(out / "policy.onnx"))
    onnx.checker.check_model(model, full_check=True)
    (inp,), (outp,) = model.graph.input, model.graph.output
    assert inp.name == "obs" and outp.name == "action"
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims == ["batch", 5]
    assert [d.dim_param or d.dim_value for d in outp.type.tensor_type.shape.dim] == ["batch", 2]
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["robot_rl.profile"] == "testbot"


def test_action_scaled_to_robot_units_inside_graph(exported, profile, kit):
    """The graph output equals min + (a + 1) / 2 * (max - min) of the torch policy's normalized action."""
    out, module, _ = exported
    obs = kit.sample(3000, seed=7)  # different from the parity set
    with torch.no_grad():
        a = module(torch.from_numpy(obs)).numpy().astype(np.float64)
    lo, hi = np.array(profile.command_min), np.array(profile.command_max)
    np.testing.assert_array_equal(lo, [-5.0, -2.0])  # from the MJCF ctrlrange
    expected = lo + (a + 1) / 2 * (hi - lo)
    sess = ort.InferenceSession(str(out / "policy.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(["action"], {"obs": obs})[0]
    assert got.dtype == np.float32 and got.shape == (3000, 2)
    assert np.max(np.abs(got - expected)) < 1e-4
    assert got.min() >= -5.0 and got.max() <= 5.0 and np.abs(got[:, 1]).max() <= 2.0
    assert np.abs(got[:, 0]).max() > 2.5  # the range is really used, not clipped to [-1, 1]


def test_dynamic_batch_axis(exported, kit):
    sess = ort.InferenceSession(str(exported[0] / "policy.onnx"), providers=["CPUExecutionProvider"])
    for b in (1, 2, 17, 1000):
        assert sess.run(["action"], {"obs": kit.sample(b)})[0].shape == (b, 2)


def test_sidecar_contents(exported, profile):
    out, _, sc = exported
    on_disk = json.loads((out / "policy.json").read_text())
    assert on_disk == sc
    assert sc["format"] == "robot_rl.policy/1"
    assert sc["model"]["sha256"] == sha256_bytes((out / "policy.onnx").read_bytes())
    assert sc["model"]["opset"] == 17 and sc["model"]["input"]["name"] == "obs"
    assert sc["obs"]["names"][0] == "slider_pos" and sc["obs"]["units"][3] == "m/s"
    assert sc["action"]["joints"] == ["slider", "hinge"] and sc["action"]["units"] == ["N", "N m"]
    assert sc["action"]["min"] == [-5.0, -2.0] and sc["action"]["interface"] == "effort"
    assert sc["control_period_s"] == 0.02
    assert sc["robot"]["profile"] == "testbot" and sc["robot"]["digest"] == profile_digest(profile)
    assert sc["env_id"] == "test/Testbot-v0" and sc["algo"] == "sac"
    assert sc["training"] == {"config": {"lr": 3e-4, "hidden": [64, 64]}, "config_hash": "abc123"}
    assert sc["metrics"] == {"eval_return": 123.5, "nan_metric": None}  # strict JSON: nan -> null
    assert sc["code"]["robot_rl_version"] == "0.1.0" and len(sc["code"]["git_commit"] or "x" * 40) == 40
    checks = sc["checks"]
    assert checks["onnx_checker_full"] and checks["deterministic"] and checks["outputs_within_limits"]
    assert checks["parity"]["n"] == 1000 and checks["parity"]["max_abs_diff"] <= 1e-4
    assert checks["parity"]["passed"] and checks["batch_vs_single_max_abs_diff"] <= 1e-4
    assert set(sc["versions"]) == {"torch", "onnx", "onnxruntime", "numpy"}
    assert len(sc["probe"]["obs"]) == 5 and len(sc["probe"]["action"]) == 2


def test_runtime_matches_torch_on_task_distribution(exported, profile, kit):
    out, module, _ = exported
    pol = OnnxPolicy(out, profile, obs_names=kit.obs_names)
    obs = kit.sample(200, seed=3)
    with torch.no_grad():
        a = module(torch.from_numpy(obs)).numpy().astype(np.float64)
    lo, hi = np.array(profile.command_min), np.array(profile.command_max)
    ref = lo + (a + 1) / 2 * (hi - lo)
    got = np.stack([pol(o) for o in obs])
    assert got.dtype == np.float64
    assert np.max(np.abs(got - ref)) < 1e-4
    np.testing.assert_allclose(pol.predict_batch(obs), got, atol=1e-6)


def test_too_few_parity_observations_refused(tmp_path, profile, kit):
    with pytest.raises(ExportCheckError, match=">= 1000 observations, got 999"):
        export_policy(kit.Policy(5, 2), tmp_path / "m", profile=profile, obs_names=kit.obs_names,
                      obs_units=kit.obs_units, parity_obs=kit.sample(999))
    assert not (tmp_path / "m").exists()


def test_nonfinite_policy_fails_checks_and_writes_nothing(tmp_path, profile, kit):
    class Bad(torch.nn.Module):
        def forward(self, obs):
            return torch.log(obs[:, :2] - 10.0)  # nan for every realistic observation

    with pytest.raises(ExportCheckError, match="non-finite actions"):
        export_policy(Bad(), tmp_path / "m", profile=profile, obs_names=kit.obs_names, obs_units=kit.obs_units,
                      parity_obs=kit.sample(1000))
    assert not (tmp_path / "m").exists()


def test_nondeterministic_module_fails_parity(tmp_path, profile, kit):
    """A module whose torch output differs from what it exports (dropout in train mode) fails parity."""

    class Noisy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = kit.Policy(5, 2)

        def forward(self, obs):
            out = self.inner(obs)
            if not torch.onnx.is_in_onnx_export():
                out = out + 1e-3  # torch path differs from the exported graph
            return out

    with pytest.raises(ExportCheckError, match="parity max abs diff"):
        export_policy(Noisy(), tmp_path / "m", profile=profile, obs_names=kit.obs_names, obs_units=kit.obs_units,
                      parity_obs=kit.sample(1000))


def test_wrong_shapes_refused(tmp_path, profile, kit):
    with pytest.raises(ValueError, match=r"expected \(N, 5\)"):
        export_policy(kit.Policy(5, 2), tmp_path / "m", profile=profile, obs_names=kit.obs_names,
                      obs_units=kit.obs_units, parity_obs=kit.sample(1000)[:, :4])
    with pytest.raises(ExportCheckError, match=r"expected \(1000, 2\)"):
        export_policy(kit.Policy(5, 3), tmp_path / "m", profile=profile, obs_names=kit.obs_names,
                      obs_units=kit.obs_units, parity_obs=kit.sample(1000))
    with pytest.raises(ValueError, match="obs_units has 4 entries"):
        export_policy(kit.Policy(5, 2), tmp_path / "m", profile=profile, obs_names=kit.obs_names,
                      obs_units=kit.obs_units[:4], parity_obs=kit.sample(1000))


def test_reexport_replaces_files_atomically(exported, tmp_path, profile, kit):
    out = tmp_path / "m"
    export_policy(kit.Policy(5, 2, seed=1), out, profile=profile, obs_names=kit.obs_names,
                  obs_units=kit.obs_units, parity_obs=kit.sample(1000))
    first = (out / "policy.onnx").read_bytes()
    sc = export_policy(kit.Policy(5, 2, seed=2), out, profile=profile, obs_names=kit.obs_names,
                       obs_units=kit.obs_units, parity_obs=kit.sample(1000))
    assert (out / "policy.onnx").read_bytes() != first
    assert sorted(p.name for p in out.iterdir()) == ["policy.json", "policy.onnx"]  # no temp files left
    assert sc["model"]["sha256"] == sha256_bytes((out / "policy.onnx").read_bytes())
    OnnxPolicy(out, profile)


def test_crash_between_model_and_sidecar_is_refused_at_load(tmp_path, profile, kit, monkeypatch):
    """Export A, then export B dies while writing the sidecar: the new model + old sidecar never load."""
    from robot_rl.export import onnx as onnx_export
    from robot_rl.export.runtime import ArtifactError

    out = tmp_path / "m"
    export_policy(kit.Policy(5, 2, seed=1), out, profile=profile, obs_names=kit.obs_names,
                  obs_units=kit.obs_units, parity_obs=kit.sample(1000))
    real = onnx_export.write_atomic

    def dying(path, data):
        if path.name == "policy.json":
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(onnx_export, "write_atomic", dying)
    with pytest.raises(OSError, match="No space left"):
        export_policy(kit.Policy(5, 2, seed=2), out, profile=profile, obs_names=kit.obs_names,
                      obs_units=kit.obs_units, parity_obs=kit.sample(1000))
    assert sorted(p.name for p in out.iterdir()) == ["policy.json", "policy.onnx"]  # no temp files left
    with pytest.raises(ArtifactError, match="sha256 mismatch"):
        OnnxPolicy(out, profile)


def test_write_atomic_keeps_old_file_on_error(tmp_path, monkeypatch):
    from robot_rl.export.onnx import write_atomic

    path = tmp_path / "f.bin"
    write_atomic(path, b"old")

    def broken_fsync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr("os.fsync", broken_fsync)
    with pytest.raises(OSError, match="Input/output error"):
        write_atomic(path, b"new")
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_delta_actions_are_offsets_from_observed_values_clipped_to_limits(tmp_path, profile, kit):
    """``action_reference``: command = obs[reference] + center + half_range * a, clipped to the command limits."""
    module = kit.Policy(5, 2)
    ref = [kit.obs_names[0], kit.obs_names[2]]
    sc = export_policy(module, tmp_path / "m", profile=profile, obs_names=kit.obs_names, obs_units=kit.obs_units,
                       parity_obs=kit.sample(1000), action_map=([0.0, 0.0], [0.5, 0.25]), action_reference=ref)
    assert sc["action"]["reference"] == ref and sc["action"]["scaling"].startswith("clip(obs[reference]")
    obs = kit.sample(2000, seed=3)
    obs[:5, 0] = 100.0  # far beyond the limits: clipped
    with torch.no_grad():
        a = np.clip(module(torch.from_numpy(obs)).numpy().astype(np.float64), -1, 1)
    expected = np.clip(obs[:, [0, 2]] + [0.5, 0.25] * a, profile.command_min, profile.command_max)
    sess = ort.InferenceSession(str(tmp_path / "m" / "policy.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(["action"], {"obs": obs.astype(np.float32)})[0]
    assert np.max(np.abs(got - expected)) < 1e-5 and np.all(got[:5, 0] == profile.command_max[0])
    with pytest.raises(ValueError, match=r"action_reference needs 2 observation names.*\['nope'\] not in"):
        export_policy(module, tmp_path / "x", profile=profile, obs_names=kit.obs_names, obs_units=kit.obs_units,
                      parity_obs=kit.sample(1000), action_map=([0.0, 0.0], [0.5, 0.25]),
                      action_reference=["nope", kit.obs_names[0]])
    with pytest.raises(ValueError, match="action_reference needs an action_map"):
        export_policy(module, tmp_path / "x", profile=profile, obs_names=kit.obs_names, obs_units=kit.obs_units,
                      parity_obs=kit.sample(1000), action_reference=ref)


def test_hierarchical_policy_exports_as_one_graph(tmp_path, profile, kit):
    """HIQL's two policies (robot_rl.algos.hiql) chain into one graph: same input and output contract as a flat
    policy, and the runtime matches torch (length normalization of the subgoal representation included)."""
    from robot_rl.export.onnx import export_policy
    from robot_rl.nets import HierarchicalPolicyModule, RunningNormalizer, mlp

    torch.manual_seed(0)
    n_obs, rep = len(kit.obs_names), 4
    norm = RunningNormalizer(n_obs)
    norm.update(torch.from_numpy(kit.sample(500, seed=1)))
    # the "state" is the first 3 values, the "goal" the last 2 (a goal policy's concat(observation, goal))
    module = HierarchicalPolicyModule(norm, mlp(n_obs, rep, (32, 32), "gelu"), mlp(3 + rep, 2, (32, 32), "gelu"), 3, 2)
    module.eval()
    out = tmp_path / "hiql"
    export_policy(module, out, profile=profile, obs_names=kit.obs_names, obs_units=kit.obs_units,
                  parity_obs=kit.sample(1000), env_id="test/Testbot-v0", algo="hiql", config={}, config_hash="h",
                  metrics={}, parity_source="sample_obs")
    pol = OnnxPolicy(out, profile, obs_names=kit.obs_names)
    obs = kit.sample(200, seed=3)
    with torch.no_grad():
        a = module(torch.from_numpy(obs)).numpy().astype(np.float64)
    lo, hi = np.array(profile.command_min), np.array(profile.command_max)
    np.testing.assert_allclose(pol.predict_batch(obs), lo + (a + 1) / 2 * (hi - lo), atol=1e-4)
