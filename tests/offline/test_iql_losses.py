"""IQL / GCBC losses against hand-computed numbers."""

from __future__ import annotations

import math

import pytest
import torch

from robot_rl.algos.gcbc import bc_loss
from robot_rl.algos.iql import awr_actor_loss, awr_weights, ddpgbc_actor_loss, expectile_loss, td_target
from robot_rl.nets import gaussian_log_prob


def test_expectile_loss_weights_positive_and_negative_errors():
    # diff = Q - V: +1 weighted tau, -2 weighted 1 - tau: (0.7 * 1 + 0.3 * 4) / 2
    assert float(expectile_loss(torch.tensor([1.0, -2.0]), 0.7)) == pytest.approx(0.95)
    # tau = 0.5 is half the mean squared error
    assert float(expectile_loss(torch.tensor([1.0, -2.0]), 0.5)) == pytest.approx(1.25)


def test_expectile_minimizer_is_the_expectile():
    # minimizing over a constant v: the tau-expectile of {0, 1} solves tau (1 - v) = (1 - tau) v -> v = tau
    v = torch.zeros((), requires_grad=True)
    opt = torch.optim.SGD([v], lr=0.5)
    q = torch.tensor([0.0, 1.0])
    for _ in range(300):
        opt.zero_grad()
        expectile_loss(q - v, 0.9).backward()
        opt.step()
    assert float(v.detach()) == pytest.approx(0.9, abs=1e-4)


def test_td_target_masks_terminal_bootstrap():
    got = td_target(torch.tensor([-1.0, 0.0]), torch.tensor([1.0, 0.0]), torch.tensor([-5.0, -5.0]), 0.9)
    assert got.tolist() == pytest.approx([-5.5, 0.0])


def test_awr_weights_are_clipped_exponentials():
    w = awr_weights(torch.tensor([0.0, 1.0, 10.0, -1.0]), beta=2.0, max_weight=100.0)
    assert w.tolist() == pytest.approx([1.0, math.exp(2.0), 100.0, math.exp(-2.0)], rel=1e-6)
    assert torch.isfinite(awr_weights(torch.tensor([1e6]), 10.0, 100.0)).all()


def test_gaussian_log_prob_matches_torch_normal():
    mean, log_std, a = torch.tensor([[0.1, -0.3]]), torch.tensor([0.2, -1.0]), torch.tensor([[0.5, 0.0]])
    ref = torch.distributions.Normal(mean, log_std.exp()).log_prob(a).sum(-1)
    assert float(gaussian_log_prob(mean, log_std, a)) == pytest.approx(float(ref), rel=1e-6)


def test_awr_actor_loss_and_bc_loss():
    lp = torch.tensor([-1.0, -3.0], requires_grad=True)
    w = torch.tensor([2.0, 0.5], requires_grad=True)
    loss = awr_actor_loss(w, lp)
    assert loss.item() == pytest.approx(-(2 * -1 + 0.5 * -3) / 2)
    loss.backward()
    assert w.grad is None  # weights are constants
    mean, log_std, a = torch.zeros(1, 1), torch.zeros(1), torch.ones(1, 1)
    assert float(bc_loss(mean, log_std, a)) == pytest.approx(0.5 + 0.5 * math.log(2 * math.pi))


def test_ddpgbc_actor_loss_is_q_scale_invariant_plus_weighted_bc():
    q = torch.tensor([-10.0, -30.0], requires_grad=True)
    lp = torch.tensor([-1.0, -2.0])
    # -mean(q) / mean|q| = 20 / 20 = 1; BC: -0.5 * mean(lp) = 0.75
    assert ddpgbc_actor_loss(q, lp, 0.5).item() == pytest.approx(1.0 + 0.75, rel=1e-5)
    ddpgbc_actor_loss(q, lp, 0.5).backward()
    assert q.grad.tolist() == pytest.approx([-1 / 40, -1 / 40], rel=1e-4)  # -1/B / mean|q|, the scale is constant
    q100 = (q.detach() * 100).requires_grad_()
    assert ddpgbc_actor_loss(q100, lp, 0.0).item() == pytest.approx(ddpgbc_actor_loss(q, lp, 0.0).item(), rel=1e-5)


def test_ivl_value_loss_takes_the_side_from_the_shared_advantage():
    from robot_rl.algos.hiql import ivl_value_loss

    # two heads, two samples; adv +1 weights tau = 0.7 for both heads, adv -1 weights 0.3, whatever each head's error
    q = torch.tensor([[1.0, 0.0], [2.0, 0.0]])
    v = torch.tensor([[0.0, 1.0], [0.0, -1.0]])
    adv = torch.tensor([1.0, -1.0])
    # head 0: (0.7 * 1 + 0.3 * 1) / 2 = 0.5; head 1: (0.7 * 4 + 0.3 * 1) / 2 = 1.55
    assert float(ivl_value_loss(q, v, adv, 0.7)) == pytest.approx(2.05)


def test_subgoal_rows_stop_at_the_episode_end_and_at_the_goal():
    import numpy as np

    from robot_rl.algos.hiql import subgoal_rows

    t, last, goal = np.array([0, 90, 10]), np.array([100, 100, 100]), np.array([50, 95, 20])
    low, target = subgoal_rows(t, last, goal, 25)
    assert low.tolist() == [25, 100, 35] and target.tolist() == [25, 95, 20]
