"""robot_rl.scale: distributed randomized rollouts and experiment sweeps on Ray (optional extra ``robot_rl[scale]``).

Nothing here imports ``ray`` at module import time; ``ray`` is imported inside the functions that need it, so the
default local backend works without it installed. See docs/scale.md.

- ``config``: ``RolloutConfig`` (``rollout.backend: local | ray``, ``rollout.workers``, ...) and ``RayConfig``.
- ``seeding``: per-worker seed streams from ``np.random.SeedSequence(run_seed).spawn``.
- ``worker``: ``RolloutWorker`` (a vectorized, domain-randomized env + a policy snapshot) and the batch format.
- ``source``: rollout sources the learners pull batches from: ``LocalRolloutSource`` (in-process workers) and
  ``RayRolloutSource`` (Ray actors, versioned weight broadcast, stale-batch policy, restart on failure).
- ``ppo_rollout`` / ``offpolicy_rollout``: fill a ``PpoLearner`` rollout / a ``SacLearner`` replay from a source.
- ``cluster``: ``init_ray`` (loopback-only local cluster or a given address; dashboard and usage stats off).
- ``sweep``: grid x seeds of normal run directories, summary table and mean +- std plot, resumable.
"""
