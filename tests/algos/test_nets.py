"""Networks: ensemble == independent MLPs, normalizer statistics, policy module bounds."""

import numpy as np
import pytest
import torch

from robot_rl.nets import EnsembleLinear, EnsembleMLP, PolicyModule, RunningNormalizer, mlp


def test_ensemble_matches_member_networks():
    torch.manual_seed(0)
    ens = EnsembleMLP(3, 4, 2, (8, 8), "tanh")
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


def test_forward_frozen_same_output_no_weight_grads():
    torch.manual_seed(0)
    ens = EnsembleMLP(2, 3, 1, (8,))
    x = torch.randn(5, 3, requires_grad=True)
    torch.testing.assert_close(ens.forward_frozen(x), ens(x))
    ens.forward_frozen(x).sum().backward()
    assert x.grad is not None and x.grad.abs().max() > 0
    assert all(p.grad is None for p in ens.parameters())


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
