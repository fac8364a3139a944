"""SAC pure functions on hand-computed numbers, the tanh-Gaussian density against torch.distributions, and the
learner's one-backward update against the losses differentiated one by one."""

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
def test_update_gradients_are_the_separate_losses_gradients(activation, autotune):
    """One backward of the summed losses gives each parameter group exactly its own loss's gradient: critic from
    the critic loss only, actor from the actor loss only (critic weights frozen), temperature from its loss only.
    Reference: each loss differentiated on its own with ``torch.autograd.grad`` on an unpacked copy of the nets."""
    import copy

    learner = _tiny_learner(activation, autotune)
    batch = learner.replay.sample()
    noise = torch.randn(2 * batch.obs.shape[0], learner.n_act)
    stats = learner.compute_grads(batch, noise)
    got = learner.flat_grad.clone()

    B, n = batch.obs.shape[0], learner.n_act
    actor, critic, target = (copy.deepcopy(m) for m in (learner.actor, learner.critic, learner.critic_target))
    log_alpha = torch.nn.Parameter(learner.log_alpha.detach().clone())
    obs2 = learner.normalizer(torch.cat([batch.obs, batch.next_obs]))
    obs, next_obs = obs2[:B], obs2[B:]
    alpha = log_alpha.detach().exp()
    with torch.no_grad():
        out = actor(next_obs)
        next_a, next_logp = tanh_gaussian_sample(out[:, :n], squash_log_std(out[:, n:]), noise[B:])
        y = soft_q_target(batch.rew, batch.done, target(torch.cat([next_obs, next_a], 1)).squeeze(-1), next_logp,
                          alpha, learner.cfg.gamma)
    q = critic(torch.cat([obs, batch.act], 1)).squeeze(-1)
    g_critic = torch.autograd.grad(critic_loss(q, y), list(critic.parameters()))
    out = actor(obs)
    a, logp = tanh_gaussian_sample(out[:, :n], squash_log_std(out[:, n:]), noise[:B])
    q_pi = critic(torch.cat([obs, a], 1)).squeeze(-1)
    g_actor = torch.autograd.grad(actor_loss(logp, q_pi, alpha), list(actor.parameters()))
    g_alpha = torch.autograd.grad(temperature_loss(log_alpha, logp, learner.target_entropy), [log_alpha])
    expect = torch.cat([g.reshape(-1) for g in (*g_critic, *g_actor)] +
                       [g_alpha[0].reshape(1) if autotune else torch.zeros(1)])
    assert expect[: learner.n_critic].abs().sum() > 0 and expect[learner.n_critic:-1].abs().sum() > 0
    torch.testing.assert_close(got, expect, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(stats[0], critic_loss(q, y).detach())


def test_update_steps_one_adam_over_all_parameters_and_polyak_averages_the_target():
    """``update`` = gradients + one Adam step with per-group learning rates + Polyak target, all on the flat views."""
    learner = _tiny_learner("relu", True)
    assert [g["lr"] for g in learner.opt.param_groups] == [learner.cfg.critic_lr]  # equal lrs: one group
    before, target_before = learner.flat.clone(), learner.target_flat.clone()
    learner.update()
    moved = learner.flat - before
    assert moved[: learner.n_critic].abs().max() > 0 and moved[learner.n_critic:].abs().max() > 0
    torch.testing.assert_close(learner.target_flat,
                               target_before + learner.cfg.tau * (learner.flat[: learner.n_critic] - target_before))
    for p in [*learner.actor.parameters(), *learner.critic.parameters()]:  # modules still see the flat storage
        assert learner.flat.data_ptr() <= p.data_ptr() < learner.flat.data_ptr() + 4 * learner.flat.numel()


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


def test_learning_rate_groups_and_optimizer_state_round_trip():
    """Different critic / actor learning rates give two Adam groups; without autotuning the temperature is in none.
    A learner's state dict restores the complete optimizer state (moments and step of every group)."""
    from robot_rl.algos.sac import SacLearner
    from robot_rl.train.config import load_experiment

    raw = {"algo": "sac", "seed": 0, "env": {"id": "robot_rl/PendulumSwingup-v0"},
           "sac": {"learning_starts": 20, "batch_size": 16, "actor_hidden": [8], "critic_hidden": [8],
                   "actor_lr": 1e-3, "critic_lr": 3e-4, "autotune_alpha": False}}
    learner = SacLearner(load_experiment(raw=raw))
    learner.begin_segment(0)
    learner.train_until(40)
    groups = learner.opt.param_groups
    assert [g["lr"] for g in groups] == [3e-4, 1e-3]
    assert groups[0]["params"][0].numel() == learner.n_critic
    assert groups[1]["params"][0].numel() == learner.flat.numel() - learner.n_critic - 1  # not log_alpha
    alpha_before = learner.log_alpha.item()
    learner.update()
    assert learner.log_alpha.item() == alpha_before
    fresh = SacLearner(load_experiment(raw=raw))
    fresh.load_state_dict(learner.state_dict())
    a, b = learner.opt.state_dict(), fresh.opt.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for i in a["state"]:
        for k in ("step", "exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(a["state"][i][k], b["state"][i][k], rtol=0, atol=0)
    torch.testing.assert_close(fresh.flat, learner.flat, rtol=0, atol=0)
