"""robot_rl.scale: where the learners get their transitions from: env construction, rollout workers and sources,
in this process or distributed on Ray (optional extra ``robot_rl[scale]``).

The layer below the algorithms (docs/contracts.md, "Layers"): it imports no learner. What it needs of one is the
small protocols of ``robot_rl.scale.protocol``; the learners (``robot_rl.algos``) pass themselves in.

Nothing here imports ``ray`` at module import time; ``ray`` is imported inside the functions that need it, so the
default local backend works without it installed. See docs/scale.md.

- ``envs``: ``make_env`` / ``make_vec_env`` (``robot_rl/...`` ids and stock Gymnasium ids, goal observations
  flattened), ``flatten_goal_obs``, ``obs_names_of``.
- ``protocol``: what the rollout loops and snapshot builders read and call on a learner.
- ``config``: ``RolloutConfig`` (``rollout.backend: local | ray``, ``rollout.workers``, ...) and ``RayConfig``.
- ``seeding``: per-worker seed streams from ``np.random.SeedSequence(run_seed).spawn``.
- ``worker``: ``RolloutWorker`` (a vectorized, domain-randomized env + a policy snapshot) and the batch format.
- ``source``: rollout sources the learners pull batches from: ``LocalRolloutSource`` (in-process workers) and
  ``RayRolloutSource`` (Ray actors, versioned weight broadcast, stale-batch policy, restart on failure).
- ``ppo_rollout`` / ``offpolicy_rollout``: fill a ``PpoLearner`` rollout / a ``SacLearner`` replay from a source.
- ``cluster``: ``init_ray`` (loopback-only local cluster or a given address; dashboard and usage stats off).

Experiment sweeps (grid x seeds of run directories, on Ray or locally) drive the training loop, so they live above it
in ``robot_rl.train.sweep``.
"""
