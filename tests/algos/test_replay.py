"""Replay buffer: ring wrap, batch contents, state round trip."""

import numpy as np
import pytest
import torch

from robot_rl.data.replay import ReplayBuffer


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
