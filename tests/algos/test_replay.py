"""Replay buffer: ring wrap, batch contents, state round trip; hindsight relabeling of goal tasks."""

import numpy as np
import pytest
import torch

from robot_rl.data.replay import GoalReplayBuffer, ReplayBuffer


def test_ring_wraps_and_samples_stored_transitions():
    rb = ReplayBuffer(capacity=4, n_obs=2, n_act=1, batch_size=16, seed=0)
    for i in range(6):
        rb.add(np.array([i, -i]), np.array([i / 10]), float(i), np.array([i + 1, -i - 1]), i == 5)
    assert len(rb) == 4 and rb.ptr == 2
    b = rb.sample()
    assert set(b.rew.tolist()) <= {2.0, 3.0, 4.0, 5.0}
    torch.testing.assert_close(b.obs[:, 0], b.rew)
    torch.testing.assert_close(b.next_obs[:, 0], b.rew + 1)
    torch.testing.assert_close(b.done, (b.rew == 5.0).float())


def test_state_round_trip_continues_identically():
    rb = ReplayBuffer(8, 1, 1, 4, seed=3)
    for i in range(5):
        rb.add(np.array([i]), np.array([0.0]), float(i), np.array([i]), False)
    rb.sample()
    state = rb.state_dict()
    first = rb.sample().rew.clone()
    rb2 = ReplayBuffer(8, 1, 1, 4, seed=99)
    rb2.load_state_dict(state)
    torch.testing.assert_close(rb2.sample().rew, first)
    with pytest.raises(ValueError, match="capacity mismatch"):
        ReplayBuffer(16, 1, 1, 4, seed=0).load_state_dict(state)


def test_empty_sample_errors():
    with pytest.raises(RuntimeError, match="empty"):
        ReplayBuffer(4, 1, 1, 2, seed=0).sample()


def _goal_buffer(capacity=64, her_ratio=1.0, seed=0):
    # obs = [step index t, episode id, goal]; the goal achieved after step t of episode e is 100 e + t
    def reward_fn(achieved, desired):
        return -np.abs(achieved - desired)[:, 0]

    return GoalReplayBuffer(capacity, n_obs=3, n_act=1, batch_size=256, seed=seed, goal_dim=1, reward_fn=reward_fn,
                            her_ratio=her_ratio, reward_scale=2.0)


ACTION_COST = -0.5  # the stored reward's part that is not a function of the goal (kept when relabeling)


def _fill(rb, episodes, length, cut_last=False):
    for e in range(episodes):  # logged goal -1; stored reward = 2 x goal reward + action cost
        for t in range(length):
            over = t == length - 1 and not (cut_last and e == episodes - 1)
            rew = 2.0 * -abs(100.0 * e + t + 1.0) + ACTION_COST
            rb.add(np.array([t, e, -1.0]), np.zeros(1), rew, np.array([t + 1, e, -1.0]), False,
                   np.array([100.0 * e + t]), over)


def test_hindsight_goals_come_from_the_same_episode_at_or_after_the_step():
    rb = _goal_buffer(capacity=64)
    _fill(rb, episodes=10, length=10)  # 100 transitions in 64 slots: the ring has wrapped mid-episode
    seen = set()
    for _ in range(20):
        b = rb.sample()
        t, e, g = b.obs[:, 0], b.obs[:, 1], b.obs[:, 2]
        future_t = g - 100.0 * e
        assert torch.all((future_t >= t) & (future_t <= 9)), "a goal achieved in this episode, not before this step"
        torch.testing.assert_close(b.next_obs[:, 2], g)  # both observations carry the new goal
        # goal reward recomputed (and scaled), the action cost kept
        torch.testing.assert_close(b.rew, 2.0 * -(100.0 * e + t - g).abs() + ACTION_COST)
        seen |= set((future_t - t).tolist())
    assert seen == set(range(10)), "every later step (and the step itself) is drawn"


def test_her_ratio_relabels_that_fraction_and_running_episodes_stay_inside_themselves():
    rb = _goal_buffer(her_ratio=0.25)
    _fill(rb, episodes=3, length=5, cut_last=True)  # the last episode still runs
    b = rb.sample()
    logged = 2.0 * -(100.0 * b.obs[64:, 1] + b.obs[64:, 0] + 1.0).abs() + ACTION_COST
    assert torch.all(b.obs[64:, 2] == -1.0) and torch.equal(b.rew[64:], logged)  # 192 of 256 rows as logged
    e, t, g = b.obs[:64, 1], b.obs[:64, 0], b.obs[:64, 2]
    assert torch.all((g - 100 * e >= t) & (g - 100 * e <= 4))
    rb.close_episode()  # a reset cuts the running episode: later transitions are another episode
    _fill(rb, episodes=1, length=5)
    for _ in range(5):
        b = rb.sample()
        e, t, g = b.obs[:64, 1], b.obs[:64, 0], b.obs[:64, 2]
        rows = e == 2
        assert torch.all(g[rows] - 200 <= 4) and torch.all(g[rows] - 200 >= t[rows])


def test_goal_buffer_state_round_trip_and_refusals():
    rb = _goal_buffer()
    _fill(rb, episodes=2, length=6, cut_last=True)
    state = rb.state_dict()
    first = rb.sample().obs.clone()
    rb2 = _goal_buffer(seed=5)
    rb2.load_state_dict(state)
    torch.testing.assert_close(rb2.sample().obs, first)
    assert rb2.episode_start == rb.episode_start
    with pytest.raises(ValueError, match="needs achieved_next"):
        rb.add(np.zeros(3), np.zeros(1), 0.0, np.zeros(3), False)
    with pytest.raises(ValueError, match="goal_dim must be in"):
        GoalReplayBuffer(8, 3, 1, 4, seed=0, goal_dim=3, reward_fn=None)
    with pytest.raises(ValueError, match="her_ratio must be in"):
        GoalReplayBuffer(8, 3, 1, 4, seed=0, goal_dim=1, reward_fn=None, her_ratio=1.5)
