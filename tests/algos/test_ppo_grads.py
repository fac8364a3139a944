"""PPO's hand-derived gradients (robot_rl.algos.ppo_grads) against autograd, parameter by parameter, and its Adam."""

import math

import pytest
import torch

from robot_rl.algos.ppo_grads import FlatAdam, clip_grad_norm_flat_, ppo_grads
from robot_rl.train.config import load_experiment


def _learner(activation: str = "tanh", **ppo):
    from robot_rl.algos.ppo import PpoLearner

    cfg = load_experiment(raw={"algo": "ppo", "seed": 0, "env": {"id": "robot_rl/CartpoleBalance-v0"},
                               "ppo": {"num_envs": 2, "n_steps": 32, "n_epochs": 2, "n_minibatches": 2,
                                       "actor_hidden": [16, 12], "critic_hidden": [16, 8], "activation": activation,
                                       "init_log_std": -0.5, **ppo}})
    learner = PpoLearner(cfg)
    learner.begin_segment(0)
    learner.train_until(128)  # two iterations: weights, log-std and normalizer moved away from initialization
    learner._rollout()  # a fresh rollout in storage
    return learner


def _table(learner) -> torch.Tensor:
    s = learner.storage
    n = s.n_steps * s.n_envs
    return torch.cat([s.obs.reshape(n, -1), s.actions.reshape(n, -1), s.log_probs.reshape(n, 1),
                      s.values.reshape(n, 1), s.advantages.reshape(n, 1), s.returns.reshape(n, 1)], dim=1)


def _compare(learner, mb: torch.Tensor) -> torch.Tensor:
    """Fused vs autograd gradients of ``mb``, per parameter; returns the autograd statistics."""
    stats_ref = learner.compute_grads(mb, fused=False)
    ref = [p.grad.clone() for p in learner.params]
    learner.flat_grad.fill_(7.0)  # every element must be overwritten
    stats = learner.compute_grads(mb, fused=True)
    names = [n for n, _ in learner.actor.named_parameters()] + [f"critic.{n}" for n, _ in
                                                                 learner.critic.named_parameters()] + ["log_std"]
    for name, p, r in zip(names, learner.params, ref):
        assert r.abs().sum() > 0, f"{name}: zero autograd gradient, the comparison would be vacuous"
        torch.testing.assert_close(p.grad, r, atol=1e-6, rtol=1e-4, msg=lambda m, name=name: f"{name}: {m}")
    torch.testing.assert_close(stats, stats_ref, atol=1e-6, rtol=1e-5)
    return stats_ref


@pytest.mark.parametrize("activation,clip_value,entropy,norm_adv", [
    ("tanh", False, 0.0, True), ("tanh", True, 0.01, True), ("relu", True, 0.0, False), ("relu", False, 0.05, True)])
def test_fused_gradients_match_autograd(activation, clip_value, entropy, norm_adv):
    learner = _learner(activation, clip_value_loss=clip_value, entropy_coef=entropy, normalize_advantages=norm_adv)
    assert learner._fused
    table = _table(learner)
    _compare(learner, table[torch.randperm(table.shape[0])[:32]])


def test_fused_gradients_match_autograd_in_the_clipped_regions():
    """Perturbed weights put many ratios outside [1 - eps, 1 + eps] and values outside old +- eps: both clipped
    branches (and their zero gradient) are exercised, with the clipped value loss on."""
    learner = _learner("tanh", clip_value_loss=True, clip_coef=0.1)
    table = _table(learner)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in [*learner.actor.parameters(), learner.log_std]:
            p.add_(0.3 * torch.randn_like(p))
        for p in learner.critic.parameters():
            p.add_(0.04 * torch.randn_like(p))
    stats = _compare(learner, table)
    clip_frac = stats[4].item()
    assert 0.2 < clip_frac < 0.99, f"clip fraction {clip_frac}: both clipped and unclipped rows are needed"
    k = learner.n_obs + learner.n_act
    with torch.no_grad():
        v = learner.critic(table[:, :learner.n_obs]).squeeze(-1)
    outside = ((v - table[:, k + 1]).abs() > 0.1).float().mean().item()
    assert 0.1 < outside < 0.99, f"fraction of values outside the clip range {outside}"


def test_ratio_gradient_ties_and_clipping_hand_numbers():
    """One linear actor, one action: d loss / d bias of the mean against the closed form per row."""
    lin = torch.nn.Linear(1, 1)
    crit = torch.nn.Linear(1, 1)
    for p in (*lin.parameters(), *crit.parameters()):
        p.grad = torch.zeros_like(p)
    log_std = torch.nn.Parameter(torch.zeros(1))
    log_std.grad = torch.zeros(1)
    with torch.no_grad():
        lin.weight.zero_(), lin.bias.zero_(), crit.weight.zero_(), crit.bias.zero_()
    obs = torch.zeros(3, 1)
    act = torch.tensor([[0.5], [1.0], [1.0]])  # log N(a; 0, 1)
    logp_now = -0.5 * act[:, 0] ** 2 - 0.5 * math.log(2 * math.pi)
    # ratios 1 (inside), e^0.5 (above 1.2), e^-0.5 (below 0.8); advantages +1, +1, +1
    old = logp_now - torch.tensor([0.0, 0.5, -0.5])
    adv = torch.ones(3)
    stats = ppo_grads([lin], [crit], log_std, "tanh", obs, act, old, torch.zeros(3), adv, torch.zeros(3),
                      clip_coef=0.2, clip_value_loss=False, value_coef=0.5, entropy_coef=0.0,
                      normalize_advantages=False)
    # row 0: ratio 1, the two surrogate terms tie and have the same slope: -A rho (a - mu) / std^2 = -0.5 ;
    # row 1: clipped term wins (rho > 1 + eps, A > 0): 0 ; row 2: unclipped wins: -A * rho * (a - mu) / std^2 =
    # -e^-0.5 ; mean over 3 rows
    torch.testing.assert_close(lin.bias.grad, torch.tensor([(-0.5 - math.exp(-0.5)) / 3]))
    torch.testing.assert_close(stats[4], torch.tensor(2 / 3))  # clip fraction
    torch.testing.assert_close(stats[0], -(1.0 + 1.2 + math.exp(-0.5)) / 3 * torch.ones(()))


def test_update_with_kl_early_stop_matches_autograd_updates():
    """Whole ``_update`` calls (adaptive lr, grad-norm clip, Adam, KL early stop) give the same parameters, learning
    rate and statistics with fused and autograd gradients."""
    runs = []
    for fused in (True, False):
        learner = _learner("tanh", target_kl=0.002, lr_schedule="adaptive", learning_rate=3e-3, n_epochs=8,
                           max_grad_norm=0.05)
        learner._fused = fused
        torch.manual_seed(5)
        learner._stats = {}
        t0 = learner.opt.t
        learner._update()
        runs.append((learner.flat.clone(), learner.opt.lr, learner.opt.t - t0, dict(learner._stats)))
    (f_a, lr_a, t_a, st_a), (f_b, lr_b, t_b, st_b) = runs
    assert 1 < t_a == t_b < 16, f"{t_a} vs {t_b} minibatch steps: KL early stop expected before 8 epochs x 2"
    assert lr_a == lr_b
    torch.testing.assert_close(f_a, f_b, atol=1e-5, rtol=1e-4)
    for k in st_a:
        torch.testing.assert_close(torch.tensor(st_a[k]), torch.tensor(st_b[k]), atol=1e-6, rtol=1e-4)


def test_flat_adam_matches_torch_adam_and_loads_its_state():
    torch.manual_seed(0)
    ref_p = [torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(5))]
    ref = torch.optim.Adam(ref_p, lr=1e-2, eps=1e-5)
    flat = torch.cat([p.detach().reshape(-1) for p in ref_p])
    grad = torch.zeros_like(flat)
    opts = [FlatAdam(flat, grad, 1e-2, eps=1e-5), FlatAdam(flat.clone(), grad, 1e-2, eps=1e-5)]
    opts[1]._fused = False
    for _ in range(4):
        g = torch.randn(17)
        for p, gp in zip(ref_p, (g[:12].view(4, 3), g[12:])):
            p.grad = gp.clone()
        ref.step()
        grad.copy_(g)
        for o in opts:
            o.lr = ref.param_groups[0]["lr"]
            o.step()
        ref.param_groups[0]["lr"] *= 0.5  # the learner changes lr between steps
    expect = torch.cat([p.detach().reshape(-1) for p in ref_p])
    for o in opts:
        torch.testing.assert_close(o.flat, expect)
    restored = FlatAdam(torch.zeros(17), torch.zeros(17), 1.0, eps=1e-5)
    restored.load_state_dict(ref.state_dict())  # a checkpoint written with torch.optim.Adam
    torch.testing.assert_close(restored.m, opts[0].m)
    torch.testing.assert_close(restored.v, opts[0].v)
    assert restored.t == 4 and restored.lr == ref.param_groups[0]["lr"]
    with pytest.raises(ValueError, match="moments of \\(3,\\) elements"):
        restored.load_state_dict({"m": torch.zeros(3), "v": torch.zeros(3), "t": 1, "lr": 1e-3})


@pytest.mark.parametrize("max_norm", [0.1, 100.0])
def test_flat_grad_norm_clip_matches_torch(max_norm):
    torch.manual_seed(2)
    params = [torch.nn.Parameter(torch.zeros(4, 3)), torch.nn.Parameter(torch.zeros(5))]
    flat = torch.randn(17)
    params[0].grad, params[1].grad = flat[:12].view(4, 3).clone(), flat[12:].clone()
    ref_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    before = flat.clone()
    norm = clip_grad_norm_flat_(flat, max_norm)
    torch.testing.assert_close(norm, ref_norm)
    torch.testing.assert_close(flat, torch.cat([params[0].grad.reshape(-1), params[1].grad]))
    if max_norm < norm:  # clipped to the max norm
        torch.testing.assert_close(torch.linalg.vector_norm(flat), torch.tensor(max_norm), rtol=1e-4, atol=0.0)
    else:  # untouched
        torch.testing.assert_close(flat, before)
