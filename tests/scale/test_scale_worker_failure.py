"""A killed rollout worker is restarted, its in-flight batch discarded, collection goes on, and the log says so."""

import logging
import os
import signal
import threading

import pytest

from robot_rl.scale.source import RayRolloutSource
from robot_rl.scale.worker import uniform_snapshot

LONG = 60000  # steps per env: a batch takes >= 1 s even on a fast machine (6000 took < 0.5 s on a 2026 Xeon),
KILL_AFTER_S = 0.2  # so the kill lands while it is in flight


def _kill_later(pid: int, delay_s: float) -> threading.Timer:
    t = threading.Timer(delay_s, os.kill, args=(pid, signal.SIGKILL))
    t.start()
    return t


def test_killed_worker_restarts_and_collection_continues(ray_cluster, caplog):
    caplog.set_level(logging.WARNING, logger="robot_rl.scale")
    src = RayRolloutSource("robot_rl/CartpoleBalance-v0", 2, workers=2, randomization="default", run_seed=0,
                           max_restarts=1, batch_timeout_s=120)
    try:
        src.set_policy(uniform_snapshot(1))
        first = src.collect(8)
        old_pid = first[1]["pid"]
        assert old_pid == src.pids[1] and first[1]["incarnation"] == 0
        timer = _kill_later(old_pid, KILL_AFTER_S)
        batches = src.collect(LONG)
        timer.join()
        # worker 1's in-flight batch died with it; the batch we got is the restarted worker's first one
        b1 = batches[1]
        assert b1["pid"] != old_pid and b1["incarnation"] == 1 and b1["seq"] == 1
        assert b1["obs"].shape[0] == LONG and b1["env_steps"] == LONG
        assert batches[0]["pid"] == first[0]["pid"] and batches[0]["seq"] == 2, "healthy worker was disturbed"
        assert src.pop_stats()["rollout_restarts"] == 1
        (event,) = [e for e in src.events if e["event"] == "worker_restart"]
        assert event["worker"] == 1 and event["pid"] == old_pid and event["restart"] == 1
        assert any("rollout worker 1" in r.getMessage() and "in-flight batch is discarded" in r.getMessage()
                   for r in caplog.records)
        # collection keeps going on the restarted worker
        again = src.collect(8)
        assert again[1]["pid"] == b1["pid"] and again[1]["seq"] == 2
        # a death beyond rollout.max_restarts ends the run with an error naming the worker
        timer = _kill_later(b1["pid"], KILL_AFTER_S)
        with pytest.raises(RuntimeError, match=r"rollout worker 1 .*died 2 times.*max_restarts=1"):
            src.collect(LONG)
        timer.join()
    finally:
        src.close()


def test_worker_that_cannot_start_fails_with_the_cause(ray_cluster):
    with pytest.raises(RuntimeError, match=r"rollout worker 0 died 1 times .*start-up: KeyError: .*unknown env id"):
        RayRolloutSource("robot_rl/NoSuchTask-v0", 2, workers=1, randomization=None, run_seed=0, batch_timeout_s=60)
