"""Hindsight relabeling on a hand-made episode with hand-computed goals and rewards."""

from __future__ import annotations

import numpy as np
import pytest

from robot_rl.data.dataset import Episode
from robot_rl.data.relabel import GoalEpisodes, RelabelConfig, Transitions, future_index, geometric_index


def _ep(xs, desired):
    n = len(xs) - 1
    ag = np.stack([np.asarray(xs, np.float32), np.zeros(len(xs), np.float32)], 1)
    obs = {"observation": ag[:, :1] * 10, "achieved_goal": ag,
           "desired_goal": np.tile(np.asarray(desired, np.float32), (n + 1, 1))}
    return Episode(obs, np.arange(n, dtype=np.float32)[:, None], -np.ones(n), np.zeros(n, bool),
                   np.r_[np.zeros(n - 1, bool), True], np.arange(n + 1) * 0.1)


@pytest.fixture()
def goals():
    # episode A: achieved x = 0, 1, 2, 3, 4 (rows 0-4); episode B: x = 7, 8, 9 (rows 5-7)
    return GoalEpisodes([_ep([0, 1, 2, 3, 4], [10, 0]), _ep([7, 8, 9], [20, 0])])


def test_index_layout(goals):
    np.testing.assert_array_equal(goals.trans_row, [0, 1, 2, 3, 5, 6])
    np.testing.assert_array_equal(goals.last_row, [4, 4, 4, 4, 7, 7])


def test_future_and_geometric_indices_hand_computed():
    t, last = np.array([1, 1, 1, 3]), np.array([4, 4, 4, 4])
    # future: t + 1 + floor(u (last - t)), u in [0, 1)
    np.testing.assert_array_equal(future_index(t, last, np.array([0.0, 0.5, 0.999, 0.5])), [2, 3, 4, 4])
    # geometric, gamma = 0.5: k = 1 + floor(log(1 - u) / log 0.5): u=0 -> 1, u=0.5 -> 2, u=0.9 -> 4 (clipped to last)
    np.testing.assert_array_equal(geometric_index(t, last, np.array([0.0, 0.5, 0.9, 0.5]), 0.5), [2, 3, 4, 4])


def test_goal_rows_and_rewards_hand_computed(goals):
    cfg = RelabelConfig(success_distance=0.5, terminate_on_success=True)
    trans = np.array([1, 1, 1, 4, 5])
    source = np.array([0, 1, 2, 3, 0])  # future, geometric, random, original, future
    u = np.array([0.5, 0.0, 0.0, 0.0, 0.0])
    u_random = np.array([0.0, 0.0, 0.7, 0.0, 0.0])
    rows = goals.goal_rows(trans, source, u, u_random, gamma=0.5)
    # future from row 1 in episode A: 1 + 1 + floor(0.5 * 3) = 3; geometric u=0: k=1 -> 2; random: floor(0.7 * 8) = 5;
    # original: -1; future from row 6 (episode B, last row 7): 7
    np.testing.assert_array_equal(rows, [3, 2, 5, -1, 7])
    b = goals.assemble(trans, rows, cfg)
    np.testing.assert_array_equal(b["goals"][:, 0], [3, 2, 7, 20, 9])
    # next achieved x: row 2 -> 2, 2, 2; row 6 -> 8; row 7 -> 9. Success when |next - goal| <= 0.5.
    np.testing.assert_array_equal(b["rewards"], [-1, 0, -1, -1, 0])
    np.testing.assert_array_equal(b["masks"], [1, 0, 1, 1, 0])
    np.testing.assert_array_equal(b["observations"][:, 0], [10, 10, 10, 70, 80])  # obs of the transition's row
    np.testing.assert_array_equal(b["next_observations"][:, 0], [20, 20, 20, 80, 90])
    np.testing.assert_array_equal(b["observations"][:, 1:], b["goals"])  # input = concat(observation, goal)
    np.testing.assert_array_equal(b["actions"][:, 0], [1, 1, 1, 0, 1])


def test_reward_fn_overrides_distance(goals):
    cfg = RelabelConfig(success_distance=0.5, terminate_on_success=False)
    b = goals.assemble(np.array([0]), np.array([4]), cfg, reward_fn=lambda a, g: -np.abs(a - g).sum(-1))
    assert b["rewards"][0] == pytest.approx(-3.0) and b["masks"][0] == 1.0  # next x = 1, goal x = 4


def test_sampled_future_goals_stay_in_the_episode_future(goals):
    cfg = RelabelConfig(p_future=1.0, p_geometric=0.0, p_random=0.0, p_original=0.0)
    rng = np.random.default_rng(0)
    b = goals.sample(4096, rng, cfg)
    now = b["observations"][:, 0] / 10
    g = b["goals"][:, 0]
    same_ep = ((now <= 4) & (g <= 4)) | ((now >= 7) & (g >= 7))
    assert same_ep.all() and (g > now).all()
    # uniform over the remaining states: from x=0 each of 1..4 equally likely
    from_start = g[now == 0]
    counts = np.bincount(from_start.astype(int), minlength=5)[1:]
    assert counts.min() > 0.2 * len(from_start)


def test_mixture_proportions(goals):
    cfg = RelabelConfig(p_future=0.0, p_geometric=0.0, p_random=0.25, p_original=0.75)
    b = goals.sample(8000, np.random.default_rng(1), cfg)
    original = np.isin(b["goals"][:, 0], [10, 20])
    assert abs(original.mean() - 0.75) < 0.03


def test_config_validation():
    with pytest.raises(ValueError, match="probabilities"):
        RelabelConfig(p_future=-1.0)
    with pytest.raises(ValueError, match="gamma"):
        RelabelConfig(gamma=1.0)


def test_transitions_flatten_dict_observations():
    tr = Transitions.from_episodes([_ep([0, 1, 2], [5, 0])])
    assert tr.observations.shape == (2, 3)  # observation (1) + desired_goal (2)
    np.testing.assert_array_equal(tr.next_observations[:, 0], [10, 20])
    np.testing.assert_array_equal(tr.observations[:, 1], [5, 5])
