"""PPO pure functions and GAE on hand-computed numbers; the flat-vector update against plain torch."""

import math

import pytest
import torch

from robot_rl.algos.ppo_math import approx_kl, ppo_clip_loss, value_loss
from robot_rl.data.rollout import RolloutStorage, gae
from robot_rl.nets import gaussian_log_prob


def test_gae_hand_numbers_with_termination():
    # one env, T=3, gamma=0.5, lambda=0.5; the episode terminates at t=1, so t=1 does not bootstrap
    rewards = torch.tensor([[1.0], [2.0], [3.0]])
    values = torch.tensor([[0.5], [1.0], [2.0]])
    dones = torch.tensor([[0.0], [1.0], [0.0]])
    last = torch.tensor([4.0])
    adv, ret = gae(rewards, values, dones, last, gamma=0.5, lam=0.5)
    # t=2: delta = 3 + 0.5*4 - 2 = 3 ; A2 = 3
    # t=1: delta = 2 - 1 = 1 (done) ; A1 = 1
    # t=0: delta = 1 + 0.5*1.0 - 0.5 = 1 ; A0 = 1 + 0.25 * 1 = 1.25
    torch.testing.assert_close(adv, torch.tensor([[1.25], [1.0], [3.0]]))
    torch.testing.assert_close(ret, adv + values)


def test_gae_lambda_one_is_discounted_return_minus_value():
    rewards = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    values = torch.zeros(2, 2)
    dones = torch.zeros(2, 2)
    adv, ret = gae(rewards, values, dones, torch.tensor([10.0, 0.0]), gamma=0.9, lam=1.0)
    # env 0: 1 + 0.9 * (1 + 0.9 * 10) = 10.0 ; env 1: 0 + 0.9 * 1 = 0.9
    torch.testing.assert_close(ret[0], torch.tensor([10.0, 0.9]))


def test_rollout_storage_flat_shapes():
    s = RolloutStorage(4, 3, 5, 2)
    s.compute_returns(torch.zeros(3), 0.99, 0.95)
    flat = s.flat()
    assert flat["obs"].shape == (12, 5) and flat["actions"].shape == (12, 2) and flat["returns"].shape == (12,)


def test_ppo_clip_loss_hand_numbers():
    ratio = torch.tensor([1.5, 0.5, 1.1])
    adv = torch.tensor([1.0, 1.0, -2.0])
    # clip 0.2: r=1.5,A=1 -> min(1.5, 1.2) = 1.2 ; r=0.5,A=1 -> min(0.5, 0.8) = 0.5 ; r=1.1,A=-2 -> min(-2.2,-2.2)
    expected = -(1.2 + 0.5 - 2.2) / 3
    torch.testing.assert_close(ppo_clip_loss(ratio, adv, 0.2), torch.tensor(expected))


def test_value_loss_clipped_and_unclipped():
    v = torch.tensor([2.0, 0.0])
    old = torch.tensor([1.0, 0.0])
    ret = torch.tensor([3.0, 1.0])
    # unclipped: 0.5 * mean([1, 1]) = 0.5
    torch.testing.assert_close(value_loss(v, old, ret, None), torch.tensor(0.5))
    # clipped (0.2): v0 -> 1.2, (1.2-3)^2 = 3.24 > 1 ; v1 unchanged 1 -> 0.5 * mean([3.24, 1]) = 1.06
    torch.testing.assert_close(value_loss(v, old, ret, 0.2), torch.tensor(1.06))


def test_gaussian_log_prob_and_kl():
    lp = gaussian_log_prob(torch.zeros(1, 2), torch.zeros(2), torch.zeros(1, 2))
    torch.testing.assert_close(lp, torch.tensor([-math.log(2 * math.pi)]))
    assert approx_kl(torch.zeros(5)).item() == 0.0
    assert approx_kl(torch.tensor([0.3, -0.3])).item() > 0.0


def test_numpy_rollout_matches_the_torch_networks():
    """The rollout's numpy actor/critic/log-prob path stores what the torch modules give for the stored obs."""
    from pathlib import Path

    from robot_rl.algos.ppo import PpoLearner
    from robot_rl.train.config import load_experiment

    cfg = load_experiment(Path(__file__).resolve().parents[2] / "config" / "ppo_cartpole_balance.yaml",
                          ["ppo.num_envs=2", "ppo.n_steps=16", "ppo.n_minibatches=2", "ppo.n_epochs=1"])
    learner = PpoLearner(cfg)
    learner.begin_segment(0)
    learner.train_until(64)  # two iterations: the weights have moved since initialization
    assert learner._np_nets is not None
    learner._rollout()
    s = learner.storage
    with torch.no_grad():
        mean = learner.actor(s.obs)
        torch.testing.assert_close(s.log_probs, gaussian_log_prob(mean, learner.log_std, s.actions))
        torch.testing.assert_close(s.values, learner.critic(s.obs).squeeze(-1))
        assert (s.actions - mean).abs().max() > 0  # exploration noise was added
    assert learner.normalizer.count == learner.env_steps  # every raw observation was folded in once


def test_numpy_gae_equals_the_torch_gae():
    import numpy as np

    from robot_rl.algos.ppo_math import gae_numpy

    g = torch.Generator().manual_seed(0)
    rewards, values = torch.randn(50, 6, generator=g), torch.randn(50, 6, generator=g)
    dones = (torch.rand(50, 6, generator=g) < 0.1).float()
    last = torch.randn(6, generator=g)
    adv, ret = gae(rewards, values, dones, last, gamma=0.99, lam=0.95)
    adv_np, ret_np = gae_numpy(rewards.numpy(), values.numpy(), dones.numpy(), last.numpy(), 0.99, 0.95)
    assert adv_np.dtype == np.float32 and adv_np.shape == (50, 6)
    torch.testing.assert_close(torch.from_numpy(adv_np), adv, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(torch.from_numpy(ret_np), ret, atol=1e-6, rtol=1e-6)


def test_rollout_normalizer_fold_is_bit_identical_to_running_normalizer_update():
    import numpy as np

    from robot_rl.algos.ppo import PpoLearner
    from robot_rl.nets import RunningNormalizer
    from robot_rl.train.config import load_experiment

    cfg = load_experiment(raw={"algo": "ppo", "env": {"id": "robot_rl/CartpoleBalance-v0"},
                               "ppo": {"num_envs": 3, "n_steps": 8, "n_minibatches": 2}})
    learner = PpoLearner(cfg)
    ref = RunningNormalizer(learner.n_obs)
    rng = np.random.default_rng(0)
    for i in range(20):
        obs = (rng.normal(size=(3, learner.n_obs)) * (1 + i) + i).astype(np.float32)
        out = learner._fold_normalize(obs)
        ref.update(obs)
        n = learner.normalizer
        for name in ("mean", "var", "count", "mean_f32", "inv_std_f32"):
            assert torch.equal(getattr(n, name), getattr(ref, name)), name
        assert np.array_equal(out, ref(torch.from_numpy(obs)).numpy())
    learner.close()


@pytest.mark.parametrize("max_norm", [0.1, 100.0])
def test_flat_grad_norm_clip_matches_torch(max_norm):
    from robot_rl.algos.ppo_math import clip_grad_norm_flat_

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


def test_update_matches_torch_adam_on_the_unpacked_networks():
    """One ``_update`` (flat gradient, flat norm clip, ``flat_adam``, adaptive lr, KL early stop) equals the same
    minibatch loop written with plain autograd, ``clip_grad_norm_`` and ``torch.optim.Adam`` on copies of the nets."""
    import copy

    from robot_rl.algos.ppo import PpoLearner
    from robot_rl.train.config import load_experiment

    cfg = load_experiment(raw={"algo": "ppo", "seed": 0, "env": {"id": "robot_rl/CartpoleBalance-v0"},
                               "ppo": {"num_envs": 2, "n_steps": 32, "n_epochs": 3, "n_minibatches": 2,
                                       "actor_hidden": [16, 12], "critic_hidden": [16, 8], "init_log_std": -0.5,
                                       "lr_schedule": "adaptive", "learning_rate": 3e-3, "max_grad_norm": 0.05}})
    learner = PpoLearner(cfg)
    learner.begin_segment(0)
    learner.train_until(128)  # two iterations: Adam state, weights and normalizer moved
    learner._rollout()
    c, s = learner.cfg, learner.storage
    actor, critic = copy.deepcopy(learner.actor), copy.deepcopy(learner.critic)
    log_std = torch.nn.Parameter(learner.log_std.detach().clone())
    params = [*actor.parameters(), *critic.parameters(), log_std]
    ref = torch.optim.Adam(params, lr=learner.lr, eps=1e-5)
    ref_state = copy.deepcopy(learner.opt.state_dict()["state"][0])
    offset = 0
    for p in params:  # the flat Adam's moments, split per parameter
        k = p.numel()
        ref.state[p] = {"step": ref_state["step"].clone(),
                        "exp_avg": ref_state["exp_avg"][offset:offset + k].view_as(p).clone(),
                        "exp_avg_sq": ref_state["exp_avg_sq"][offset:offset + k].view_as(p).clone()}
        offset += k
    n = s.n_steps * s.n_envs
    table = torch.cat([s.obs.reshape(n, -1), s.actions.reshape(n, -1), s.log_probs.reshape(n, 1),
                       s.values.reshape(n, 1), s.advantages.reshape(n, 1), s.returns.reshape(n, 1)], dim=1)
    gen_state = torch.get_rng_state()
    learner.update()
    torch.set_rng_state(gen_state)
    k = learner.n_obs + learner.n_act
    lr = ref.param_groups[0]["lr"]
    for _ in range(c.n_epochs):
        shuffled = table[torch.randperm(n)]
        for start in range(0, n, n // c.n_minibatches):
            mb = shuffled[start:start + n // c.n_minibatches]
            obs, act = mb[:, :learner.n_obs], mb[:, learner.n_obs:k]
            old_logp, old_v, adv, ret = (mb[:, k + j] for j in range(4))
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
            log_ratio = gaussian_log_prob(actor(obs), log_std, act) - old_logp
            loss = ppo_clip_loss(log_ratio.exp(), adv, c.clip_coef) + c.value_coef * value_loss(
                critic(obs).squeeze(-1), old_v, ret, None)
            ref.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, c.max_grad_norm)
            ref.step()
            kl = float(approx_kl(log_ratio.detach()))
            lr = max(1e-5, lr / 1.5) if kl > 2 * c.desired_kl else min(1e-2, lr * 1.5) if kl < 0.5 * c.desired_kl \
                else lr
            ref.param_groups[0]["lr"] = lr
            assert c.target_kl is None or kl <= c.target_kl, "this test expects no early stop"
    expect = torch.cat([p.detach().reshape(-1) for p in params])
    torch.testing.assert_close(learner.flat, expect, atol=1e-5, rtol=1e-4)
    assert learner.lr == pytest.approx(lr)


def test_update_threads_apply_to_the_update_only():
    """``ppo.update_threads`` runs the gradient update on that many torch threads and gives the rollout back its own
    count; the update itself is the same computation (equal within float reordering)."""
    from robot_rl.algos.ppo import PpoLearner
    from robot_rl.train.config import load_experiment

    raw = {"algo": "ppo", "env": {"id": "robot_rl/CartpoleBalance-v0"},
           "ppo": {"num_envs": 4, "n_steps": 16, "n_minibatches": 2, "n_epochs": 2}}
    with pytest.raises(ValueError, match="ppo.update_threads must be >= 0"):
        load_experiment(raw={**raw, "ppo": {**raw["ppo"], "update_threads": -1}})
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    seen, flats = {0: [], 2: []}, []
    try:
        for threads in (0, 2):
            torch.manual_seed(0)
            learner = PpoLearner(load_experiment(raw={**raw, "ppo": {**raw["ppo"], "update_threads": threads}}))
            learner.begin_segment(0)
            learner._rollout()
            step = learner.opt.step

            def spy(*a, _step=step, _seen=seen[threads], **k):
                _seen.append(torch.get_num_threads())
                return _step(*a, **k)

            learner.opt.step = spy
            learner.update()
            assert torch.get_num_threads() == 1, "the rollout's thread count is restored after the update"
            flats.append(learner.flat.detach().clone())
            learner.close()
    finally:
        torch.set_num_threads(before)
    assert set(seen[0]) == {1} and set(seen[2]) == {2}
    torch.testing.assert_close(flats[0], flats[1], rtol=1e-4, atol=1e-5)
