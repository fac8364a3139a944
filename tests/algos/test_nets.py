"""Networks: ensemble == independent MLPs, normalizer statistics, policy module bounds."""

import numpy as np
import pytest
import torch

from robot_rl.nets import EnsembleLinear, EnsembleMLP, PolicyModule, RunningNormalizer, mlp


@pytest.mark.parametrize("layer_norm", [False, True])
def test_ensemble_matches_member_networks(layer_norm):
    torch.manual_seed(0)
    ens = EnsembleMLP(3, 4, 2, (8, 8), "tanh", layer_norm=layer_norm)
    if layer_norm:  # per-member scale and shift, not the identity they start at
        for p in ens.parameters():
            p.data.add_(0.1 * torch.randn_like(p))
    x = torch.randn(3, 5, 4)
    y = ens(x)
    assert y.shape == (3, 5, 2)
    for i in range(3):
        torch.testing.assert_close(y[i], ens.member(i)(x[i]))
    shared = ens(x[0])  # [B, in] input is shared by all members
    for i in range(3):
        torch.testing.assert_close(shared[i], ens.member(i)(x[0]))


def test_ensemble_members_are_independent():
    torch.manual_seed(0)
    ens = EnsembleMLP(2, 3, 1, (4,))
    x = torch.randn(2, 6, 3)
    ens(x)[0].sum().backward()  # loss only on member 0
    for layer in ens.net:
        if isinstance(layer, EnsembleLinear):
            assert layer.weight.grad[1].abs().max() == 0.0
            assert layer.weight.grad[0].abs().max() > 0.0
    assert not torch.equal(ens.member(0)[0].weight, ens.member(1)[0].weight)  # own initialization


@pytest.mark.parametrize("layer_norm", [False, True])
def test_forward_frozen_same_output_no_weight_grads(layer_norm):
    torch.manual_seed(0)
    ens = EnsembleMLP(2, 3, 1, (8,), layer_norm=layer_norm)
    x = torch.randn(5, 3, requires_grad=True)
    torch.testing.assert_close(ens.forward_frozen(x), ens(x))
    ens.forward_frozen(x).sum().backward()
    assert x.grad is not None and x.grad.abs().max() > 0
    assert all(p.grad is None for p in ens.parameters())


def test_mlp_layer_norm_after_each_hidden_activation():
    net = mlp(3, 1, (8, 8), "gelu", layer_norm=True)
    kinds = [type(m).__name__ for m in net]
    assert kinds == ["Linear", "GELU", "LayerNorm", "Linear", "GELU", "LayerNorm", "Linear"]
    h = net[:3](torch.randn(16, 3))
    torch.testing.assert_close(h.mean(-1), torch.zeros(16), atol=1e-5, rtol=0)


def test_ensemble_rejects_bad_sizes():
    with pytest.raises(ValueError, match="positive sizes"):
        EnsembleLinear(0, 3, 3)
    with pytest.raises(ValueError, match="unknown activation"):
        EnsembleMLP(2, 3, 1, (4,), "sigmoidish")


def test_normalizer_matches_numpy_over_batches():
    rng = np.random.default_rng(0)
    data = rng.normal(3.0, 2.0, size=(1000, 4)) * np.array([1, 10, 0.1, 1])
    norm = RunningNormalizer(4)
    for chunk in np.array_split(data, 7):
        norm.update(torch.as_tensor(chunk))
    np.testing.assert_allclose(norm.mean.numpy(), data.mean(0), rtol=1e-10)
    np.testing.assert_allclose(norm.var.numpy(), data.var(0), rtol=1e-10)
    y = norm(torch.as_tensor(data, dtype=torch.float32))
    np.testing.assert_allclose(y.mean(0).numpy(), 0.0, atol=1e-4)
    np.testing.assert_allclose(y.std(0).numpy(), 1.0, atol=1e-3)
    assert norm(torch.full((1, 4), 1e9)).max().item() == norm.clip


def test_normalizer_state_dict_round_trip_refreshes_forward():
    a = RunningNormalizer(2)
    a.update(torch.tensor([[1.0, 2.0], [3.0, 6.0]]))
    b = RunningNormalizer(2)
    b.load_state_dict(a.state_dict())
    x = torch.tensor([[2.0, 4.0]])
    torch.testing.assert_close(a(x), b(x))
    torch.testing.assert_close(b(x), torch.zeros(1, 2))


def test_policy_module_bounds_and_shapes():
    torch.manual_seed(0)
    net = mlp(3, 4, (16,))
    with torch.no_grad():
        net[-1].bias.fill_(50.0)
    for squash in ("tanh", "clip"):
        out = PolicyModule(torch.nn.Identity(), net, 2, squash)(torch.randn(7, 3))
        assert out.shape == (7, 2) and out.abs().max() <= 1.0
    with pytest.raises(ValueError, match="squash"):
        PolicyModule(torch.nn.Identity(), net, 2, "sigmoid")


def test_ensemble_single_output_path_matches_batched_matmul_with_gradients():
    """``n_out == 1`` (a critic's Q) takes the multiply-and-sum path; values and all gradients equal ``baddbmm``'s."""
    from robot_rl.nets.ensemble import ensemble_affine

    torch.manual_seed(0)
    x = torch.randn(2, 7, 5, requires_grad=True)
    w = torch.randn(2, 5, 1, requires_grad=True)
    b = torch.randn(2, 1, 1, requires_grad=True)
    g = torch.randn(2, 7, 1)
    y = ensemble_affine(x, w, b)
    grads = torch.autograd.grad(y, (x, w, b), g)
    y_ref = torch.baddbmm(b, x, w)
    grads_ref = torch.autograd.grad(y_ref, (x, w, b), g)
    torch.testing.assert_close(y, y_ref)
    for got, ref in zip(grads, grads_ref):
        torch.testing.assert_close(got, ref)
    shared = ensemble_affine(x[0], w, b)  # [B, n_in] shared by the members
    torch.testing.assert_close(shared[1], x[0] @ w[1] + b[1])


def _two_nets():
    torch.manual_seed(0)
    net_a = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    net_b = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    net_b.load_state_dict(net_a.state_dict())
    return net_a, net_b


def test_flat_adam_matches_torch_adam_with_two_learning_rates():
    from robot_rl.nets import flat_adam, pack_parameters

    net_a, net_b = _two_nets()
    ref = torch.optim.Adam([{"params": net_b[0].parameters(), "lr": 1e-2},
                            {"params": net_b[2].parameters(), "lr": 3e-3}])
    flat, grad = pack_parameters(list(net_a.parameters()))
    n0 = net_a[0].weight.numel() + net_a[0].bias.numel()
    opt = flat_adam(flat, grad, [(0, n0, 1e-2), (n0, flat.numel(), 3e-3)])
    assert [g["lr"] for g in opt.param_groups] == [1e-2, 3e-3]
    for _ in range(5):
        x = torch.randn(8, 3)
        grad.zero_()
        net_a(x).square().sum().backward()
        assert grad.abs().sum() > 0  # autograd accumulated into the flat gradient, through the .grad views
        opt.step()
        ref.zero_grad()
        net_b(x).square().sum().backward()
        ref.step()
    for pa, pb in zip(net_a.parameters(), net_b.parameters()):
        torch.testing.assert_close(pa, pb)
        assert flat.data_ptr() <= pa.data_ptr() < flat.data_ptr() + 4 * flat.numel()


def test_flat_adam_merges_equal_rates_and_leaves_unlisted_elements():
    from robot_rl.nets import flat_adam

    flat, grad = torch.zeros(10), torch.ones(10)
    opt = flat_adam(flat, grad, [(5, 9, 0.1), (0, 5, 0.1)])
    assert len(opt.param_groups) == 1 and opt.param_groups[0]["params"][0].numel() == 9
    opt.step()
    torch.testing.assert_close(flat[:9], torch.full((9,), -0.1))
    assert flat[9] == 0.0
    with pytest.raises(ValueError, match="overlap"):
        flat_adam(flat, grad, [(0, 5, 0.1), (4, 8, 0.2)])


def test_adam_state_round_trips_and_loads_the_older_formats():
    """``load_adam_state`` restores the full state (moments, step, lr), also from the flat ``{m, v, t, lr}`` state of
    the earlier hand-written Adam and from a ``torch.optim.Adam`` over the unpacked parameters."""
    from robot_rl.nets import flat_adam, load_adam_state, pack_parameters

    net_a, net_b = _two_nets()
    ref = torch.optim.Adam(net_b.parameters(), lr=1e-2, eps=1e-5)
    flat, grad = pack_parameters(list(net_a.parameters()))
    opt = flat_adam(flat, grad, [(0, flat.numel(), 1e-2)], eps=1e-5)
    for _ in range(3):
        x = torch.randn(8, 3)
        grad.zero_()
        net_a(x).square().sum().backward()
        opt.step()
        ref.zero_grad()
        net_b(x).square().sum().backward()
        ref.step()
    opt.param_groups[0]["lr"] = ref.param_groups[0]["lr"] = 5e-3
    saved = opt.state_dict()
    m, v = saved["state"][0]["exp_avg"].clone(), saved["state"][0]["exp_avg_sq"].clone()
    for state in ({"m": m, "v": v, "t": 3, "lr": 5e-3}, ref.state_dict(), saved):
        flat2, grad2 = torch.zeros_like(flat), torch.zeros_like(grad)
        opt2 = flat_adam(flat2, grad2, [(0, flat.numel(), 1.0)], eps=1e-5)
        load_adam_state(opt2, state, flat2)
        got = opt2.state_dict()
        assert got["param_groups"][0]["lr"] == 5e-3
        assert float(got["state"][0]["step"]) == 3.0
        torch.testing.assert_close(got["state"][0]["exp_avg"], m)
        torch.testing.assert_close(got["state"][0]["exp_avg_sq"], v)
    with pytest.raises(ValueError, match="moments of 3 elements"):
        load_adam_state(opt2, {"m": torch.zeros(3), "v": torch.zeros(3), "t": 1}, flat2)


def test_package_calls_no_private_torch_api():
    """No ``torch._*`` / ``torch.ops.*`` calls in robot_rl (they may change in any torch release)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "robot_rl"
    private = re.compile(r"\btorch\.(_[a-z]\w*|ops)\.?")
    hits = [f"{p.relative_to(root)}:{i}: {line.strip()}" for p in sorted(root.rglob("*.py"))
            for i, line in enumerate(p.read_text().splitlines(), 1)
            if private.search(line.split("#")[0]) and "``" not in line]
    assert not hits, "private torch APIs:\n" + "\n".join(hits)
