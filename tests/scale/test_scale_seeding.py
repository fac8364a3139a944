"""Per-worker seed streams and the in-process rollout source: independent, reproducible, order-free."""

import numpy as np

from robot_rl.scale.seeding import SEED_SPAN, worker_env_seed, worker_reset_seed, worker_torch_seed
from robot_rl.scale.source import LocalRolloutSource
from robot_rl.scale.worker import next_observations, uniform_snapshot


def test_worker_seeds_follow_seedsequence_spawn():
    spawned = np.random.SeedSequence(7).spawn(4)
    for w in range(4):
        want = int(spawned[w].generate_state(1, dtype=np.uint64)[0] % SEED_SPAN)
        assert worker_env_seed(7, w) == want
    seeds = {worker_env_seed(s, w, k) for s in range(3) for w in range(4) for k in range(2)}
    assert len(seeds) == 24, "worker / run / incarnation streams collide"
    assert worker_reset_seed(5, 0) != worker_reset_seed(5, 1) != worker_reset_seed(6, 1)
    assert worker_torch_seed(0, 0) != worker_torch_seed(0, 1)


def _collect(src, steps=40):
    src.reset(seed=11 + 7 * src.workers[0].run_seed)  # as a learner does: segment reset seeds derive from the run seed
    src.set_policy(uniform_snapshot(1))
    return src.collect(steps)


def test_worker_stream_depends_only_on_run_seed_and_index():
    env = "robot_rl/CartpoleBalance-v0"
    two = _collect(LocalRolloutSource(env, 4, workers=2, randomization="default", run_seed=3))
    three = _collect(LocalRolloutSource(env, 6, workers=3, randomization="default", run_seed=3))
    for w in range(2):
        for key in ("obs", "actions", "rewards", "terminated", "truncated", "final_obs", "last_obs"):
            np.testing.assert_array_equal(two[w][key], three[w][key], err_msg=f"worker {w} {key}")
    assert not np.array_equal(two[0]["obs"], two[1]["obs"])
    other_seed = _collect(LocalRolloutSource(env, 4, workers=2, randomization="default", run_seed=4))
    assert not np.array_equal(two[0]["obs"], other_seed[0]["obs"])
    # without a reset the streams come from the run seed alone
    a = LocalRolloutSource(env, 2, workers=2, randomization="default", run_seed=3)
    b = LocalRolloutSource(env, 2, workers=2, randomization="default", run_seed=4)
    a.set_policy(uniform_snapshot(1))
    b.set_policy(uniform_snapshot(1))
    assert not np.array_equal(a.collect(5)[1]["obs"], b.collect(5)[1]["obs"])


def test_batch_layout_and_successors():
    src = LocalRolloutSource("robot_rl/CartpoleBalance-v0", 2, workers=1, randomization="default", run_seed=0)
    (b,) = _collect(src, steps=200)  # random actions drop the pole well within 200 steps
    assert b["obs"].shape == (200, 2, 5) and b["actions"].shape == (200, 2, 1) and b["env_steps"] == 400
    ended = b["terminated"] | b["truncated"]
    assert ended.sum() == b["final_t"].size == len(b["episodes"]) > 0
    nxt = next_observations(b)
    t, i = b["final_t"][0], b["final_i"][0]
    np.testing.assert_array_equal(nxt[t, i], b["final_obs"][0])
    assert not np.array_equal(nxt[t, i], b["obs"][t + 1, i]), "successor of a terminal step must be its final obs"
    t2 = next(k for k in range(199) if not ended[k, 0])
    np.testing.assert_array_equal(nxt[t2, 0], b["obs"][t2 + 1, 0])
    assert sum(e[1] for e in b["episodes"]) <= 400
