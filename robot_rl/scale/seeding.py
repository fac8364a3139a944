"""Independent, reproducible randomization streams per rollout worker (``np.random.SeedSequence`` spawn keys).

Worker ``w`` of a run seeded ``s`` owns ``SeedSequence(s, spawn_key=(w,))`` (= ``SeedSequence(s).spawn(n)[w]``), so
its stream depends only on (run seed, worker index) and not on how many workers exist or which ran first. A
restarted worker (incarnation ``k`` > 0) draws from the child ``(w, k)`` so it does not replay its predecessor's
episodes; a learner-requested reset with seed ``r`` (a training segment's seed) re-seeds the envs from
``SeedSequence(r, spawn_key=(w, k, 1))`` and the action sampler from ``(w, k, 2)``, so a run resumed at a segment
boundary continues exactly as the uninterrupted one.
"""

from __future__ import annotations

import numpy as np

from robot_rl.core.experiment import TRAIN_SEED_LIMIT

SEED_SPAN = TRAIN_SEED_LIMIT - 100_000
"""Training env seeds stay below this, so ``seed + i`` for a worker's envs stays below TRAIN_SEED_LIMIT (held-out
evaluation seeds are >= TRAIN_SEED_LIMIT)."""


def worker_sequence(run_seed: int, worker_index: int, incarnation: int = 0) -> np.random.SeedSequence:
    """The seed sequence of worker ``worker_index`` (restart count ``incarnation``) of a run seeded ``run_seed``."""
    if worker_index < 0 or incarnation < 0:
        raise ValueError(f"worker_index and incarnation must be >= 0, got {worker_index}, {incarnation}")
    key = (worker_index,) if incarnation == 0 else (worker_index, incarnation)
    return np.random.SeedSequence(int(run_seed), spawn_key=key)


def _draw(seq: np.random.SeedSequence) -> int:
    return int(seq.generate_state(1, dtype=np.uint64)[0] % SEED_SPAN)


def worker_env_seed(run_seed: int, worker_index: int, incarnation: int = 0) -> int:
    """Base seed of the worker's vector env (env ``i`` of the worker gets ``base + i``); < TRAIN_SEED_LIMIT."""
    return _draw(worker_sequence(run_seed, worker_index, incarnation))


def worker_reset_seed(reset_seed: int, worker_index: int, incarnation: int = 0) -> int:
    """Env seed of the worker's vector env for a learner-requested reset (e.g. a training segment's seed)."""
    key = (worker_index, incarnation, 1)
    return _draw(np.random.SeedSequence(int(reset_seed), spawn_key=key))


def worker_reset_torch_seed(reset_seed: int, worker_index: int, incarnation: int = 0) -> int:
    """Action-sampling seed after a learner-requested reset, so a run resumed at a segment boundary acts the same."""
    key = (worker_index, incarnation, 2)
    return int(np.random.SeedSequence(int(reset_seed), spawn_key=key).generate_state(1, dtype=np.uint64)[0]
               % (2**63 - 1))


def worker_torch_seed(run_seed: int, worker_index: int, incarnation: int = 0) -> int:
    """Seed of the worker's action-sampling generator (independent of its env seeds)."""
    return int(worker_sequence(run_seed, worker_index, incarnation).spawn(1)[0].generate_state(1, dtype=np.uint64)[0]
               % (2**63 - 1))
