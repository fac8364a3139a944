"""SAC pure functions on hand-computed numbers, and the tanh-Gaussian density against torch.distributions."""

import math

import pytest
import torch

from robot_rl.algos.sac import actor_loss, critic_loss, soft_q_target, temperature_loss
from robot_rl.nets.distributions import squash_log_std, tanh_gaussian_deterministic, tanh_gaussian_sample


def test_soft_q_target_hand_numbers():
    rew = torch.tensor([1.0, -0.5])
    done = torch.tensor([0.0, 1.0])
    next_q = torch.tensor([[2.0, 10.0], [3.0, -4.0]])  # [E=2, B=2]: min over critics = [2, -4]
    next_logp = torch.tensor([-1.0, 0.5])
    y = soft_q_target(rew, done, next_q, next_logp, alpha=0.2, gamma=0.9)
    # b=0: 1 + 0.9 * (2 - 0.2 * -1) = 1 + 0.9 * 2.2 = 2.98 ; b=1: terminal -> reward only
    torch.testing.assert_close(y, torch.tensor([2.98, -0.5]))


def test_critic_loss_sums_members_and_averages_batch():
    q = torch.tensor([[1.0, 2.0], [0.0, 4.0]])
    target = torch.tensor([1.0, 1.0])
    # member 0: (0 + 1) / 2 = 0.5; member 1: (1 + 9) / 2 = 5
    torch.testing.assert_close(critic_loss(q, target), torch.tensor(5.5))


def test_actor_loss_uses_min_critic():
    logp = torch.tensor([-1.0, 2.0])
    q = torch.tensor([[3.0, 0.0], [1.0, 5.0]])  # min = [1, 0]
    # mean(0.5 * [-1, 2] - [1, 0]) = mean([-1.5, 1.0]) = -0.25
    torch.testing.assert_close(actor_loss(logp, q, 0.5), torch.tensor(-0.25))


def test_temperature_loss_gradient_sign():
    log_alpha = torch.tensor(0.0, requires_grad=True)
    logp = torch.tensor([-0.5, -1.5])  # entropy 1.0 < target 2 (target_entropy=-(-2)...): use target_entropy = -2
    loss = temperature_loss(log_alpha, logp, target_entropy=-2.0)
    # -(0 * mean(logp - 2)) = 0 ; d/dlog_alpha = -mean(logp + H) = -mean([-2.5, -3.5]) = 3.0 -> alpha decreases
    loss.backward()
    torch.testing.assert_close(loss.detach(), torch.tensor(0.0))
    torch.testing.assert_close(log_alpha.grad, torch.tensor(3.0))


def test_tanh_gaussian_log_prob_matches_torch_distributions():
    torch.manual_seed(0)
    mean = torch.randn(64, 3)
    log_std = squash_log_std(torch.randn(64, 3))
    noise = torch.randn(64, 3)
    action, logp = tanh_gaussian_sample(mean, log_std, noise)
    base = torch.distributions.Normal(mean, log_std.exp())
    tanh = torch.distributions.TanhTransform(cache_size=1)
    dist = torch.distributions.TransformedDistribution(base, [tanh])
    u = mean + log_std.exp() * noise
    ref = dist.log_prob(tanh(u)).sum(-1)  # the cached inverse avoids atanh(tanh(u)) at saturation
    torch.testing.assert_close(action, torch.tanh(u))
    torch.testing.assert_close(logp, ref, atol=1e-3, rtol=1e-4)


def test_tanh_gaussian_hand_number_and_bounds():
    # 1-D, mean 0, log_std 0, noise 0: log N(0;0,1) - log(1 - tanh(0)^2) = -0.5 log(2 pi)
    _, logp = tanh_gaussian_sample(torch.zeros(1, 1), torch.zeros(1, 1), torch.zeros(1, 1))
    torch.testing.assert_close(logp, torch.tensor([-0.5 * math.log(2 * math.pi)]))
    big = tanh_gaussian_deterministic(torch.tensor([[1e4, -1e4]]))
    assert big.abs().max() <= 1.0
    ls = squash_log_std(torch.tensor([-1e3, 1e3]))
    torch.testing.assert_close(ls, torch.tensor([-5.0, 2.0]))


def test_flat_adam_matches_torch_adam_and_grads_stay_in_place():
    from robot_rl.algos.sac import FlatAdam, pack_parameters

    torch.manual_seed(0)
    net_a = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    net_b = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    net_b.load_state_dict(net_a.state_dict())
    ref = torch.optim.Adam([{"params": net_b[0].parameters(), "lr": 1e-2},
                            {"params": net_b[2].parameters(), "lr": 3e-3}])
    flat, grad = pack_parameters(list(net_a.parameters()))
    lr = torch.full_like(flat, 1e-2)
    lr[net_a[0].weight.numel() + net_a[0].bias.numel():] = 3e-3
    opt = FlatAdam(flat, grad, lr)
    for _ in range(5):
        x = torch.randn(8, 3)
        opt.zero_grad()
        net_a(x).square().sum().backward()
        assert all(p.grad.data_ptr() >= grad.data_ptr() for p in net_a.parameters())  # accumulated in place
        assert grad.abs().sum() > 0
        opt.step()
        ref.zero_grad()
        net_b(x).square().sum().backward()
        ref.step()
    for pa, pb in zip(net_a.parameters(), net_b.parameters()):
        torch.testing.assert_close(pa, pb)


def test_flat_adam_fallback_matches_fused_kernel():
    from robot_rl.algos.sac import FlatAdam

    torch.manual_seed(1)
    lr = torch.cat([torch.full((7,), 1e-2), torch.full((5,), 3e-3), torch.zeros(1)])
    params, opts = [], []
    for fused in (True, False):
        flat, grad = torch.zeros(13), torch.zeros(13)
        opt = FlatAdam(flat, grad, lr)
        opt._fused = fused and opt._fused
        params.append((flat, grad))
        opts.append(opt)
    for _ in range(4):
        g = torch.randn(13)
        for (_flat, grad), opt in zip(params, opts):
            grad.copy_(g)
            opt.step()
    torch.testing.assert_close(params[0][0], params[1][0])
    assert params[0][0][-1] == 0.0 and params[0][0][:12].abs().min() > 0  # lr 0 run untouched


def _tiny_learner(activation: str, autotune: bool):
    from robot_rl.algos.sac import SacLearner
    from robot_rl.train.config import load_experiment

    cfg = load_experiment(raw={"algo": "sac", "seed": 0, "env": {"id": "robot_rl/PendulumSwingup-v0"},
                               "sac": {"learning_starts": 50, "batch_size": 32, "activation": activation,
                                       "autotune_alpha": autotune, "init_alpha": 0.3, "actor_hidden": [16, 12],
                                       "critic_hidden": [16, 8]}})
    learner = SacLearner(cfg)
    learner.begin_segment(0)
    learner.train_until(120)  # 70 updates: nonzero statistics, critics and actor moved away from init
    return learner


@pytest.mark.parametrize("activation,autotune", [("relu", True), ("relu", False), ("tanh", True)])
def test_fused_gradients_match_autograd(activation, autotune):
    """The hand-derived single-pass gradients equal autograd's on the same batch and noise, parameter by parameter."""
    learner = _tiny_learner(activation, autotune)
    assert learner._fused
    batch = learner.replay.sample()
    noise = torch.randn(2 * batch.obs.shape[0], learner.n_act)
    stats_ref = learner.compute_grads(batch, noise, fused=False)
    ref = learner.flat_grad.clone()
    learner.flat_grad.fill_(7.0)  # every element must be overwritten
    stats = learner.compute_grads(batch, noise, fused=True)
    assert ref[: learner.n_critic].abs().sum() > 0 and ref[learner.n_critic:-1].abs().sum() > 0
    torch.testing.assert_close(learner.flat_grad, ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(stats, stats_ref)
    if not autotune:
        assert learner.flat_grad[-1] == 0.0


def test_numpy_acting_path_matches_torch_actor():
    from robot_rl.nets.distributions import squash_log_std

    learner = _tiny_learner("relu", True)
    obs = learner._obs
    torch.manual_seed(3)
    fast = learner._act(obs)
    torch.manual_seed(3)
    with torch.no_grad():
        out = learner.actor(learner.normalizer(torch.from_numpy(obs).unsqueeze(0)))[0]
        mean, raw = out[: learner.n_act], out[learner.n_act:]
        ref = torch.tanh(mean + squash_log_std(raw).exp() * torch.randn(learner.n_act)).numpy()
    assert fast.dtype == ref.dtype and fast.shape == (learner.n_act,)
    torch.testing.assert_close(torch.from_numpy(fast), torch.from_numpy(ref))


def test_compiled_gradients_fall_back_to_eager_with_a_warning():
    from robot_rl.algos.sac_grads import CompiledSacGrads

    learner = _tiny_learner("relu", True)
    batch = learner.replay.sample()
    noise = torch.randn(2 * batch.obs.shape[0], learner.n_act)
    learner.compute_grads(batch, noise, fused=False)
    ref = learner.flat_grad.clone()

    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler found")

    grads = CompiledSacGrads()
    grads._fn = broken  # what a failing Inductor compile looks like from the outside
    learner._grads_fn = grads
    learner.flat_grad.zero_()
    with pytest.warns(RuntimeWarning, match="torch.compile of the SAC update failed.*no C\\+\\+ compiler"):
        learner.compute_grads(batch, noise)
    assert not grads.compiled
    torch.testing.assert_close(learner.flat_grad, ref, atol=1e-5, rtol=1e-4)
