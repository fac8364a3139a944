"""Vector env: equals N single envs under same-step autoreset, dict observations, episode stats, attributes."""

import numpy as np
import pytest

import robot_rl.envs as E
from robot_rl.envs.curriculum import AutoCurriculum
from robot_rl.envs.vector import make_vec


@pytest.mark.parametrize("backend,workers", [("sync", 1), ("process", 2)])
def test_vec_equals_single_envs(backend, workers):
    n, seed = 3, 11
    vec = make_vec("CartpoleBalance-v0", n, seed=seed, randomization="default", num_workers=workers, backend=backend)
    singles = [E.make("CartpoleBalance-v0", seed=seed + i, randomization="default") for i in range(n)]
    obs, info = vec.reset(seed=seed)
    assert np.array_equal(obs, np.stack([e.reset(seed=seed + i)[0] for i, e in enumerate(singles)]))
    rng = np.random.default_rng(0)
    episodes = 0
    returns = np.zeros(n)
    for _ in range(120):
        a = rng.uniform(-1, 1, (n, 1)).astype(np.float32)
        obs, rew, term, trunc, infos = vec.step(a)
        for i, e in enumerate(singles):
            o, r, te, tr, _ = e.step(a[i])
            returns[i] += r
            assert term[i] == te and trunc[i] == tr and rew[i] == r
            assert infos["_final_obs"][i] == (te or tr)
            if te or tr:
                episodes += 1
                assert np.array_equal(infos["final_obs"][i], o)
                assert infos["_episode"][i] and infos["episode"]["r"][i] == pytest.approx(returns[i])
                returns[i] = 0.0
                o, _ = e.reset()
            assert np.array_equal(obs[i], o)
    assert episodes > 0, "the test should cross at least one autoreset"
    assert obs.dtype == np.float32 and obs.shape == (n, 5)
    assert infos["physics_error"].shape == (n,)
    vec.set_attr("randomization_scale", 0.25)
    assert vec.get_attr("randomization_scale") == (0.25,) * n
    AutoCurriculum(threshold=0.0, step=0.5).apply(vec)
    assert vec.get_attr("randomization_scale") == (0.0,) * n
    vec.close()


def test_vec_dict_observations():
    vec = make_vec("ArmReach-v0", 2, seed=0, max_episode_steps=3, num_workers=2)
    obs, _ = vec.reset()
    assert obs["observation"].shape == (2, 14) and obs["desired_goal"].shape == (2, 3)
    assert vec.observation_space.contains(obs)
    for _ in range(3):
        obs, rew, term, trunc, infos = vec.step(np.zeros((2, 7), np.float32))
    assert trunc.all() and infos["_final_obs"].all()
    assert infos["final_obs"]["achieved_goal"].shape == (2, 3)
    assert infos["is_success"].dtype == bool
    rewards = vec.call("compute_reward", np.zeros(3), np.ones(3), {})
    assert rewards == (-1.0, -1.0)
    assert vec.call("control_dt") == (0.02, 0.02)
    vec.close()


def test_vec_errors():
    with pytest.raises(ValueError, match="num_envs"):
        make_vec("CartpoleSwingup-v0", 0)
    vec = make_vec("CartpoleSwingup-v0", 2, seed=0)
    vec.reset()
    with pytest.raises(ValueError, match="shape"):
        vec.step(np.zeros((3, 1)))
    vec.close()


def _cpu_seconds(pid: int) -> float:
    import os

    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/stat"), reason="needs /proc")
def test_process_backend_workers_sleep_when_idle():
    """Workers busy-wait for the next command only briefly (SPIN_S), then sleep in the pipe read: an idle vector
    env costs no CPU; commands sent after the idle time still work."""
    import time

    from robot_rl.envs import vector

    vec = make_vec("CartpoleSwingup-v0", 4, num_workers=2, seed=0)
    try:
        vec.reset(seed=0)
        vec.step(np.zeros((4, 1), np.float32))
        time.sleep(0.2)  # past SPIN_S (2 ms)
        pid = vec._procs[0].pid
        before = _cpu_seconds(pid)
        time.sleep(0.5)
        idle_cpu = _cpu_seconds(pid) - before
        assert idle_cpu < 0.1, f"worker used {idle_cpu:.2f} CPU-s while idle for 0.5 s (SPIN_S {vector.SPIN_S})"
        obs, *_ = vec.step(np.zeros((4, 1), np.float32))
        assert obs.shape == (4, 5) and len(vec.get_attr("control_dt")) == 4
    finally:
        vec.close()
