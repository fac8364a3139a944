"""OnnxPolicy refuses every malformed artifact (docs/reliability.md, scenarios 6 and 18) with expected vs got."""

from __future__ import annotations

import dataclasses
import json
import pickle

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from robot_rl.export.onnx import export_policy
from robot_rl.export.runtime import ArtifactError, OnnxPolicy, PolicyInputError, sha256_bytes


def replace_model(model_dir, data: bytes, fix_sha: bool = True) -> None:
    """Put ``data`` in place of policy.onnx; keep the sidecar's sha256 consistent unless told otherwise."""
    (model_dir / "policy.onnx").write_bytes(data)
    if fix_sha:
        edit_sidecar(model_dir, lambda sc: sc["model"].update(sha256=sha256_bytes(data)))


def edit_sidecar(model_dir, fn) -> None:
    path = model_dir / "policy.json"
    sc = json.loads(path.read_text())
    fn(sc)
    path.write_text(json.dumps(sc))


def gemm_model(n_obs=5, n_act=2, *, in_name="obs", out_name="action", in_type=TensorProto.FLOAT, bias=0.0,
               post=None) -> bytes:
    """A hand-built linear ONNX model ``action = obs @ W.T + b`` (optionally followed by a unary op)."""
    np_type = {TensorProto.FLOAT: np.float32, TensorProto.DOUBLE: np.float64}[in_type]
    W = numpy_helper.from_array(np.full((n_act, n_obs), 0.01, dtype=np_type), "W")
    b = numpy_helper.from_array(np.full(n_act, bias, dtype=np_type), "b")
    nodes = [helper.make_node("Gemm", [in_name, "W", "b"], ["y" if post else out_name], transB=1)]
    if post:
        nodes.append(helper.make_node(post, ["y"], [out_name]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(in_name, in_type, ["batch", n_obs])],
                              [helper.make_tensor_value_info(out_name, in_type, ["batch", n_act])], [W, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def refused(model_dir, profile, *needles, **kw):
    with pytest.raises(ArtifactError) as exc:
        OnnxPolicy(model_dir, profile, **kw)
    msg = str(exc.value)
    for n in needles:
        assert n in msg, msg
    return msg


def test_valid_artifact_loads(artifact, profile, kit):
    pol = OnnxPolicy.load(artifact, profile, obs_names=kit.obs_names)
    assert pol.n_obs == 5 and pol.joint_names == ("slider", "hinge")
    assert pol.session.get_session_options().intra_op_num_threads == 1


# ---------------------------------------------------------------- graph signature


def test_wrong_input_width(artifact, profile):
    replace_model(artifact, gemm_model(n_obs=4))
    refused(artifact, profile, "input 'obs' shape", "expected ['batch', 5]", "got ['batch', 4]")


def test_wrong_output_width(artifact, profile):
    replace_model(artifact, gemm_model(n_act=3))
    refused(artifact, profile, "output 'action' shape", "expected ['batch', 2]", "got ['batch', 3]")


def test_wrong_dtype(artifact, profile):
    replace_model(artifact, gemm_model(in_type=TensorProto.DOUBLE))
    refused(artifact, profile, "dtype", "expected tensor(float)", "got tensor(double)")


def test_wrong_input_name(artifact, profile):
    replace_model(artifact, gemm_model(in_name="observation"))
    refused(artifact, profile, "input names", "expected ['obs']", "got ['observation']")


def test_wrong_output_name(artifact, profile):
    replace_model(artifact, gemm_model(out_name="actions"))
    refused(artifact, profile, "output names", "expected ['action']", "got ['actions']")


# ---------------------------------------------------------------- file integrity and payload kind


def test_truncated_file_refused(artifact, profile):
    data = (artifact / "policy.onnx").read_bytes()
    replace_model(artifact, data[: len(data) // 2], fix_sha=False)
    refused(artifact, profile, "truncated ONNX file", f"file has {len(data) // 2}")


def test_truncated_file_refused_even_with_matching_sha(artifact, profile):
    data = (artifact / "policy.onnx").read_bytes()
    replace_model(artifact, data[: len(data) - 100])
    refused(artifact, profile, "truncated ONNX file")


def test_bit_flip_fails_sha256(artifact, profile):
    data = bytearray((artifact / "policy.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01
    replace_model(artifact, bytes(data), fix_sha=False)
    refused(artifact, profile, "sha256 mismatch", "sidecar says", "file has")


class _Boom:
    """Unpickling this would create the marker file: proof that nothing deserialized it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickle_payload_refused_before_deserializing(artifact, profile, tmp_path):
    marker = tmp_path / "unpickled"
    replace_model(artifact, pickle.dumps(_Boom(marker), protocol=4))
    refused(artifact, profile, "refusing a pickle payload")
    assert not marker.exists()


def test_old_protocol_pickle_refused(artifact, profile):
    replace_model(artifact, pickle.dumps({"weights": [1, 2, 3]}, protocol=0))
    refused(artifact, profile, "not an ONNX model")


def test_torch_save_checkpoint_refused(artifact, profile, tmp_path):
    torch.save({"w": torch.zeros(3)}, tmp_path / "ckpt.pt")
    replace_model(artifact, (tmp_path / "ckpt.pt").read_bytes())
    refused(artifact, profile, "zip archive")


@pytest.mark.parametrize("data,needle", [(b"", "empty file"), (b"\x08\x08", "no graph"),
                                         (b"hello world, not a model", "not an ONNX model")])
def test_garbage_refused(artifact, profile, data, needle):
    replace_model(artifact, data)
    refused(artifact, profile, needle)


def test_missing_files(artifact, profile):
    (artifact / "policy.onnx").unlink()
    refused(artifact, profile, "model file missing")
    (artifact / "policy.json").unlink()
    refused(artifact, profile, "sidecar missing")


# ---------------------------------------------------------------- sidecar


@pytest.mark.parametrize("text,needle", [("{not json", "not valid JSON"), ('{"format": NaN}', "not valid JSON"),
                                         ('{"format": "robot_rl.policy/0"}', "expected 'robot_rl.policy/1'"),
                                         ("[1, 2]", "format"),
                                         ('{"format": "robot_rl.policy/1"}', "lacks field")])
def test_bad_sidecar(artifact, profile, text, needle):
    (artifact / "policy.json").write_text(text)
    refused(artifact, profile, needle)


@pytest.mark.parametrize("change,needles", [
    (lambda p: dataclasses.replace(p, joints=tuple(reversed(p.joints))),
     ["joints does not match", "expected ['hinge', 'slider']", "got ['slider', 'hinge']"]),
    (lambda p: dataclasses.replace(p, command_joints=("hinge", "slider"), command_min=(-2.0, -5.0),
                                   command_max=(2.0, 5.0)),
     ["command_joints", "expected ['hinge', 'slider']"]),
    (lambda p: dataclasses.replace(p, command_interface="position", kp=(1.0,) * len(p.command_joints),
                                   kd=(0.1,) * len(p.command_joints)),
     ["command_interface", "expected 'position'", "got 'effort'"]),
    (lambda p: dataclasses.replace(p, control_period_s=0.01), ["control_period_s", "expected 0.01", "got 0.02"]),
    (lambda p: dataclasses.replace(p, command_max=(5.0, 3.0)), ["command_max", "expected [5.0, 3.0]"]),
])
def test_sidecar_profile_mismatch(artifact, profile, change, needles):
    refused(artifact, change(profile), *needles)


def test_digest_mismatch_is_refused(artifact, profile):
    edit_sidecar(artifact, lambda sc: sc["robot"].update(digest="0" * 64))
    refused(artifact, profile, "robot profile digest mismatch")


def test_obs_layout_mismatch(artifact, profile, kit):
    names = list(reversed(kit.obs_names))
    refused(artifact, profile, "observation layout", f"expected {names}", obs_names=names)


def test_limits_length_mismatch(artifact, profile):
    edit_sidecar(artifact, lambda sc: sc["action"].update(min=[-5.0]))
    refused(artifact, profile, "action.min has 1 values for 2 joints")


# ---------------------------------------------------------------- load-time probe


def test_probe_nonfinite_output(artifact, profile):
    replace_model(artifact, gemm_model(bias=-1.0, post="Sqrt"))  # sqrt(-1) = nan
    refused(artifact, profile, "probe run on zeros observation failed", "non-finite action")


def test_probe_out_of_limits(artifact, profile):
    replace_model(artifact, gemm_model(bias=100.0))
    refused(artifact, profile, "outside the command limits")


def test_probe_wrong_weights(artifact, profile):
    replace_model(artifact, gemm_model(bias=0.5))  # valid graph, in limits, but not the exported policy
    refused(artifact, profile, "probe action: expected")


def test_other_policy_with_valid_sidecar_loads(tmp_path, profile, kit):
    """Sanity for the probe: a genuinely exported different policy loads (its own probe)."""
    out = export_policy(kit.Policy(5, 2, seed=9), tmp_path / "p9", profile=profile, obs_names=kit.obs_names,
                        obs_units=kit.obs_units, parity_obs=kit.sample(1000))
    assert out["probe"]["action"]
    OnnxPolicy(tmp_path / "p9", profile)


# ---------------------------------------------------------------- call-time guards


@pytest.mark.parametrize("bad,needle", [(np.nan, "nan"), (np.inf, "inf"), (-np.inf, "-inf"), (1e300, "1e+300")])
def test_call_refuses_nonfinite_input_naming_the_element(artifact, profile, kit, bad, needle):
    pol = OnnxPolicy(artifact, profile)
    obs = kit.sample(1)[0].astype(np.float64)
    obs[3] = bad
    with pytest.raises(PolicyInputError, match=r"obs\[0, 3\] \(slider_vel\)") as exc:
        pol(obs)
    assert needle in str(exc.value)
    with pytest.raises(PolicyInputError, match="slider_vel"):
        pol.predict_batch(obs[None])


@pytest.mark.parametrize("shape", [(4,), (6,), (2, 5), (1, 1, 5)])
def test_call_refuses_wrong_shape(artifact, profile, shape):
    pol = OnnxPolicy(artifact, profile)
    with pytest.raises(PolicyInputError, match="expected"):
        pol(np.zeros(shape))


def test_call_accepts_row_and_out_buffer(artifact, profile, kit):
    pol = OnnxPolicy(artifact, profile)
    obs = kit.sample(1)
    buf = np.empty(2)
    assert pol(obs, out=buf) is buf
    np.testing.assert_array_equal(buf, pol(obs[0]))


def test_model_from_another_export_refused(artifact, profile, tmp_path, kit):
    """policy.onnx swapped for one exported for another profile (sha256 updated): the embedded digest differs."""
    other = dataclasses.replace(profile, control_period_s=0.01)
    export_policy(kit.Policy(5, 2), tmp_path / "other", profile=other, obs_names=kit.obs_names,
                  obs_units=kit.obs_units, parity_obs=kit.sample(1000))
    replace_model(artifact, (tmp_path / "other" / "policy.onnx").read_bytes())
    refused(artifact, profile, "embedded profile digest", "different exports")


def test_call_refuses_nonfinite_output(artifact, profile):
    """A graph that is fine at the probe but gives NaN for some inputs: the call raises, never returns NaN."""
    from robot_rl.export.runtime import PolicyOutputError

    replace_model(artifact, gemm_model(bias=1.0, post="Sqrt"))  # sqrt(0.01 * sum(obs) + 1)
    edit_sidecar(artifact, lambda sc: sc.pop("probe"))
    pol = OnnxPolicy(artifact, profile)
    np.testing.assert_allclose(pol(np.zeros(5)), [1.0, 1.0], rtol=1e-6)
    with pytest.raises(PolicyOutputError, match=r"non-finite action \[nan, nan\] for joints \['slider', 'hinge'\]"):
        pol(np.full(5, -1000.0))
