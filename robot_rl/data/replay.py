"""Uniform replay buffer over preallocated torch tensors (off-policy learners).

Writes go through numpy views of the storage (no tensor allocation per env step); ``sample`` draws indices with its
own ``torch.Generator`` and gathers into preallocated batch tensors with ``index_select(out=...)``, so the SAC hot
loop allocates nothing here. The buffer's full state (contents, cursor, generator) round-trips through
``state_dict`` / ``load_state_dict`` for exact resume.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch


class Batch(NamedTuple):
    """A sampled minibatch. Shapes: obs/next_obs ``[B, n_obs]``, act ``[B, n_act]``, rew/done ``[B]``."""

    obs: torch.Tensor
    act: torch.Tensor
    rew: torch.Tensor
    next_obs: torch.Tensor
    done: torch.Tensor


class ReplayBuffer:
    """FIFO ring buffer of transitions ``(obs, act, rew, next_obs, terminated)``; float32 throughout.

    ``done`` stores *termination* only (a time-limit truncation still bootstraps from ``next_obs``).
    """

    def __init__(self, capacity: int, n_obs: int, n_act: int, batch_size: int, seed: int):
        if capacity < 1 or batch_size < 1:
            raise ValueError(f"capacity and batch_size must be >= 1, got {capacity}, {batch_size}")
        self.capacity, self.n_obs, self.n_act, self.batch_size = int(capacity), int(n_obs), int(n_act), int(batch_size)
        self.obs = torch.zeros(capacity, n_obs)
        self.act = torch.zeros(capacity, n_act)
        self.rew = torch.zeros(capacity)
        self.next_obs = torch.zeros(capacity, n_obs)
        self.done = torch.zeros(capacity)
        self._views = [t.numpy() for t in (self.obs, self.act, self.rew, self.next_obs, self.done)]
        self.ptr = 0
        self.size = 0
        self.generator = torch.Generator().manual_seed(int(seed))
        self._idx = torch.zeros(batch_size, dtype=torch.long)
        self._batch = Batch(torch.zeros(batch_size, n_obs), torch.zeros(batch_size, n_act), torch.zeros(batch_size),
                            torch.zeros(batch_size, n_obs), torch.zeros(batch_size))

    def __len__(self) -> int:
        return self.size

    def add(self, obs: np.ndarray, act: np.ndarray, rew: float, next_obs: np.ndarray, done: bool) -> None:
        """Store one transition (``obs``/``next_obs`` ``[n_obs]``, ``act`` ``[n_act]``)."""
        i = self.ptr
        o, a, r, no, d = self._views
        o[i] = obs
        a[i] = act
        r[i] = rew
        no[i] = next_obs
        d[i] = float(done)
        self.ptr = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self) -> Batch:
        """Uniformly sampled batch (with replacement) in preallocated tensors, valid until the next ``sample``."""
        if self.size == 0:
            raise RuntimeError("cannot sample from an empty replay buffer")
        torch.randint(0, self.size, (self.batch_size,), generator=self.generator, out=self._idx)
        b = self._batch
        for src, dst in zip((self.obs, self.act, self.rew, self.next_obs, self.done), b):
            torch.index_select(src, 0, self._idx, out=dst)
        return b

    def state_dict(self) -> dict:
        n = self.size
        return {"obs": self.obs[:n].clone(), "act": self.act[:n].clone(), "rew": self.rew[:n].clone(),
                "next_obs": self.next_obs[:n].clone(), "done": self.done[:n].clone(), "ptr": self.ptr,
                "size": self.size, "capacity": self.capacity, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        if state["capacity"] != self.capacity:
            raise ValueError(f"replay capacity mismatch: checkpoint {state['capacity']}, config {self.capacity}")
        n = int(state["size"])
        for name in ("obs", "act", "rew", "next_obs", "done"):
            getattr(self, name)[:n] = state[name]
        self.ptr, self.size = int(state["ptr"]), n
        self.generator.set_state(state["generator"])


class GoalReplayBuffer(ReplayBuffer):
    """``ReplayBuffer`` for goal-conditioned tasks with hindsight relabeling (HER, Andrychowicz et al. 2017,
    "future" strategy): a fraction ``her_ratio`` of every sampled batch gets, as its goal, the goal achieved at a
    uniformly drawn later step of the same episode (the step itself included), and its reward recomputed.

    Observations are flat ``concat(observation, desired_goal)`` (the goal is the last ``goal_dim`` entries of
    ``obs`` and ``next_obs``); ``add`` also takes the goal achieved after the transition and whether the episode
    ended there. ``reward_fn(achieved (B, goal_dim), desired (B, goal_dim)) -> (B,)`` is the task's goal reward
    (Gymnasium-Robotics ``compute_reward``; times ``reward_scale``, as stored rewards are). Whatever the stored
    reward has beyond it (terms of the action or of joint velocities, which a new goal does not change) is kept
    with the transition and added back: relabeled reward = ``reward_fn(achieved, new goal) * reward_scale +
    (stored reward - reward_fn(achieved, logged goal) * reward_scale)``. Terminations are kept as logged.
    """

    def __init__(self, capacity: int, n_obs: int, n_act: int, batch_size: int, seed: int, *, goal_dim: int,
                 reward_fn, her_ratio: float = 0.8, reward_scale: float = 1.0):
        super().__init__(capacity, n_obs, n_act, batch_size, seed)
        if not 0 < goal_dim < n_obs:
            raise ValueError(f"goal_dim must be in (0, n_obs={n_obs}), got {goal_dim}")
        if not 0.0 <= her_ratio <= 1.0:
            raise ValueError(f"her_ratio must be in [0, 1], got {her_ratio}")
        self.goal_dim, self.reward_fn = int(goal_dim), reward_fn
        self.her_ratio, self.reward_scale = float(her_ratio), float(reward_scale)
        self.achieved = torch.zeros(capacity, goal_dim)
        self.other = torch.zeros(capacity)  # the stored reward's part that is not the goal reward
        self.episode_end = torch.full((capacity,), -1, dtype=torch.long)  # -1: the episode is still running
        self.episode_start = 0
        self._n_her = int(round(self.her_ratio * batch_size))

    def add(self, obs, act, rew, next_obs, done, achieved_next=None, episode_over: bool = False) -> None:
        """Store a transition and the goal achieved after it (``achieved_next`` ``[goal_dim]``); ``episode_over``
        closes the episode (a termination or a time limit).
        """
        if achieved_next is None:
            raise ValueError("GoalReplayBuffer.add needs achieved_next (the goal achieved after the transition)")
        i = self.ptr
        self.achieved.numpy()[i] = achieved_next
        goal_reward = self.reward_fn(np.asarray(achieved_next, np.float64)[None],
                                     np.asarray(next_obs, np.float64)[None, -self.goal_dim:])
        self.other[i] = float(rew) - float(np.asarray(goal_reward).reshape(-1)[0]) * self.reward_scale
        self.episode_end[i] = -1
        super().add(obs, act, rew, next_obs, done)
        if episode_over:
            self.close_episode()

    def close_episode(self) -> None:
        """End the running episode at the last stored transition (also for an episode cut short by a reset)."""
        n = (self.ptr - self.episode_start) % self.capacity
        if n == 0 and self.size == self.capacity and self.episode_end[self.episode_start] < 0:
            n = self.capacity  # (one episode as long as the whole buffer)
        if n:
            rows = (self.episode_start + torch.arange(n)) % self.capacity
            self.episode_end[rows] = (self.ptr - 1) % self.capacity
        self.episode_start = self.ptr

    def sample(self) -> Batch:
        b = super().sample()
        k = self._n_her
        if k == 0:
            return b
        idx = self._idx[:k]
        last = (self.ptr - 1) % self.capacity
        end = self.episode_end[idx]
        end = torch.where(end < 0, torch.full_like(end, last), end)
        remaining = (end - idx) % self.capacity  # later steps of the same episode, this one included
        u = torch.rand(k, generator=self.generator)
        future = (idx + (u * (remaining + 1).to(u.dtype)).long().clamp_max(remaining)) % self.capacity
        goal = self.achieved[future]
        gd = self.goal_dim
        b.obs[:k, -gd:] = goal
        b.next_obs[:k, -gd:] = goal
        r = self.reward_fn(self.achieved[idx].numpy().astype(np.float64), goal.numpy().astype(np.float64))
        b.rew[:k] = torch.as_tensor(np.asarray(r, dtype=np.float32) * self.reward_scale) + self.other[idx]
        return b

    def state_dict(self) -> dict:
        s = super().state_dict()
        n = self.size
        s.update(achieved=self.achieved[:n].clone(), other=self.other[:n].clone(),
                 episode_end=self.episode_end[:n].clone(), episode_start=self.episode_start)
        return s

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        n = self.size
        self.achieved[:n] = state["achieved"]
        self.other[:n] = state["other"]
        self.episode_end[:n] = state["episode_end"]
        self.episode_start = int(state["episode_start"])
