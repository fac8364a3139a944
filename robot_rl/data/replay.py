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
