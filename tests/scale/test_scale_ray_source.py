"""Ray rollout source: same batches as the in-process source, versioned weights, stale-batch policy, loopback only."""

import os
import re
import subprocess

import numpy as np
from scale_tiny_configs import PPO_RAW

from robot_rl.algos.ppo import PpoLearner
from robot_rl.scale.source import LocalRolloutSource, RayRolloutSource, make_rollout_source
from robot_rl.scale.worker import gaussian_snapshot
from robot_rl.train.config import load_experiment

KEYS = ("obs", "actions", "log_probs", "rewards", "terminated", "truncated", "final_t", "final_i", "final_obs",
        "last_obs")


def test_ray_batches_equal_local_batches(ray_cluster):
    learner = PpoLearner(load_experiment(raw=PPO_RAW))
    kw = {"workers": 2, "randomization": "default", "run_seed": 5}
    local = LocalRolloutSource("robot_rl/CartpoleBalance-v0", 4, **kw)
    remote = RayRolloutSource("robot_rl/CartpoleBalance-v0", 4, **kw)
    try:
        obs_l, _ = local.reset(seed=99)
        obs_r, _ = remote.reset(seed=99)
        np.testing.assert_array_equal(obs_l, obs_r)
        for round_ in range(2):
            snap = gaussian_snapshot(learner)
            assert local.set_policy(snap) == remote.set_policy(snap) == round_
            bl, br = local.collect(48), remote.collect(48)
            for w in range(2):
                assert br[w]["worker"] == w and br[w]["version"] == round_
                for k in KEYS:
                    np.testing.assert_array_equal(bl[w][k], br[w][k], err_msg=f"round {round_} worker {w} {k}")
                assert bl[w]["episodes"] == br[w]["episodes"]
            with __import__("torch").no_grad():  # a new policy version must change the actions taken
                learner.actor[0].weight.add_(0.5)
        assert not np.array_equal(bl[0]["obs"], bl[1]["obs"]), "workers share a randomization stream"
        assert remote.pop_stats()["rollout_batches"] == 4
    finally:
        local.close()
        remote.close()


def test_stale_batches_dropped_or_kept(ray_cluster):
    learner = PpoLearner(load_experiment(raw=PPO_RAW))
    snap = gaussian_snapshot(learner)
    src = RayRolloutSource("robot_rl/CartpoleBalance-v0", 2, workers=1, randomization=None, run_seed=0,
                           max_staleness=1)
    try:
        src.set_policy(snap)
        assert src.collect(8)[0]["version"] == 0      # prefetches the next batch at version 0
        src.set_policy(snap)
        assert src.collect(8)[0]["version"] == 0      # one version behind: accepted (max_staleness=1)
        src.set_policy(snap)
        src.set_policy(snap)
        (b,) = src.collect(8)                        # prefetched version 1 is two behind: dropped, re-collected
        assert b["version"] == 3
        stats = src.pop_stats()
        assert stats["rollout_stale_dropped"] == 1
        assert any(e["event"] == "stale_dropped" and e["version"] == 1 for e in src.events)
    finally:
        src.close()
    cfg = load_experiment(raw=PPO_RAW)
    from robot_rl.scale.config import RolloutConfig

    ppo_src = make_rollout_source(cfg, 4, default_staleness=0, rollout=RolloutConfig(backend="local"))
    off_src = make_rollout_source(cfg, 4, default_staleness=None, rollout=RolloutConfig(backend="local"))
    assert (ppo_src.max_staleness, off_src.max_staleness) == (0, None)
    ppo_src.close()
    off_src.close()


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_ray_listens_on_loopback_only(ray_cluster):
    assert ray_cluster.util.get_node_ip_address() == "127.0.0.1"
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, f"ss failed: {out.stderr}"
    ray_listeners, bad = 0, []
    for line in out.stdout.splitlines():
        pids = [int(p) for p in re.findall(r"pid=(\d+)", line)]
        if not any(p == os.getpid() or "ray" in _cmdline(p) or "gcs_server" in _cmdline(p) for p in pids):
            continue
        ray_listeners += 1
        local = line.split()[3]
        if not local.replace("[::ffff:", "").startswith("127.0.0.1"):
            bad.append(line)
    assert ray_listeners >= 3, f"expected the GCS, raylet and workers to listen, found {ray_listeners}"
    assert not bad, "Ray listens on a non-loopback address:\n" + "\n".join(bad)
