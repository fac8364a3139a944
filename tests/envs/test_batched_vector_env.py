"""Batched vector env (backend "batched"): the same results as N single envs, for every task that supports it.

Observations, terminations, truncations, physics errors, success flags and autoresets are bit-identical; rewards
of the numpy pass (``compiled_step=False``) match the single env's scalar reward to ``REWARD_TOL`` (numpy's SIMD
exp / arctan2 may differ from the C library's in the last bit), those of the compiled batch kernel exactly.
"""

import math
import os

import numpy as np
import pytest

import robot_rl.envs as E
from robot_rl.core import mujoco_jit
from robot_rl.envs import fast_threads
from robot_rl.envs.batched import batch_support
from robot_rl.envs.vector import make_vec

BATCHED_TASKS = ["CartpoleSwingup-v0", "CartpoleBalance-v0", "PendulumSwingup-v0"]
REWARD_TOL = {"rel": 1e-12, "abs": 1e-12}


def _compare(vec, singles, steps: int, rng, stats: dict | None = None, exact_rewards: bool = False) -> int:
    """Step both with the same random actions; assert identical results; return the number of autoresets.

    ``stats``: running episode returns/lengths ``{"r": (n,), "l": (n,)}`` of the vector env, kept across calls.
    """
    n = len(singles)
    episodes = 0
    stats = stats if stats is not None else {"r": np.zeros(n), "l": np.zeros(n, dtype=int)}
    returns, lengths = stats["r"], stats["l"]
    for t in range(steps):
        a = rng.uniform(-1.2, 1.2, (n, *singles[0].action_space.shape)).astype(np.float32)
        obs, rew, term, trunc, infos = vec.step(a)
        for i, e in enumerate(singles):
            o, r, te, tr, info = e.step(a[i])
            returns[i] += r
            lengths[i] += 1
            assert (term[i], trunc[i]) == (te, tr), (t, i)
            assert rew[i] == r if exact_rewards else rew[i] == pytest.approx(r, **REWARD_TOL), (t, i)
            assert infos["physics_error"][i] == info["physics_error"]
            assert infos["is_success"][i] == info.get("is_success", False)
            assert infos["_final_obs"][i] == infos["_episode"][i] == (te or tr)
            if te or tr:
                episodes += 1
                assert np.array_equal(infos["final_obs"][i], o)
                assert infos["episode"]["r"][i] == pytest.approx(returns[i], **REWARD_TOL)
                assert infos["episode"]["l"][i] == lengths[i]
                returns[i], lengths[i] = 0.0, 0
                o, _ = e.reset()
            else:
                assert not infos["final_obs"][i].any() and infos["episode"]["l"][i] == 0
            assert np.array_equal(obs[i], o), (t, i, obs[i], o)
    return episodes


THREADS_OK = mujoco_jit.AVAILABLE and fast_threads.threads_unavailable_reason() is None
MODES = [pytest.param((None, 1), id="compiled"), pytest.param((False, 1), id="numpy"),
         pytest.param((None, 2), id="threads", marks=pytest.mark.skipif(not THREADS_OK, reason="no threaded step"))]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("env_id", BATCHED_TASKS)
@pytest.mark.parametrize("randomization", [None, "default", "reality"])
def test_batched_equals_single_envs(env_id, randomization, mode):
    # 300-step episodes cross the 256-step noise chunks; balance episodes end early (termination), the others
    # are truncated, so every run crosses same-step autoresets. compiled: the block's compiled batch kernel
    # (robot_rl.envs.fast_step, rewards bit-identical); numpy: the numpy pass (compiled_step=False); threads: the
    # compiled kernel split over this thread and a worker thread (envs 0-1 here, 2-3 there).
    compiled, threads = mode
    n, seed, kw = 4, 7, {"max_episode_steps": 300, "compiled_step": compiled}
    vec = make_vec(env_id, n, seed=seed, randomization=randomization, backend="batched", num_threads=threads, **kw)
    assert vec.backend == "batched" and vec.batched and vec.num_threads == threads
    assert (vec._blocks[0]._kernel is not None) == (compiled is None and mujoco_jit.AVAILABLE)
    singles = [E.make(env_id, seed=seed + i, randomization=randomization, **kw) for i in range(n)]
    obs, info = vec.reset(seed=seed)
    ref = [e.reset(seed=seed + i) for i, e in enumerate(singles)]
    assert np.array_equal(obs, np.stack([o for o, _ in ref]))
    assert list(info["is_success"]) == [i.get("is_success", False) for _, i in ref]
    assert _compare(vec, singles, 620, np.random.default_rng(0), exact_rewards=vec._blocks[0]._kernel is not None) >= n
    assert obs.dtype == np.float32
    vec.close()


def test_batched_is_the_default_where_supported():
    vec = make_vec("CartpoleSwingup-v0", 4)
    assert vec.backend == "batched"
    vec.close()
    for env_id, n in (("Reacher2-v0", 4), ("CartpoleSwingup-v0", 3)):  # unsupported task; too few envs to pay
        vec = make_vec(env_id, n)
        assert vec.backend == "sync" and not vec.batched
        vec.close()
    vec = make_vec("CartpoleSwingup-v0", 8, num_workers=2)
    assert vec.backend == "process" and vec.batched  # blocks of 4 envs: batched
    vec.close()
    vec = make_vec("CartpoleSwingup-v0", 4, num_workers=2)
    assert vec.backend == "process" and not vec.batched  # blocks of 2 envs: one by one
    vec.close()


@pytest.mark.parametrize("env_id,reason", [("Reacher2-v0", "no batched reward"), ("ArmReach-v0", "no batched reward"),
                                           ("dmc-cartpole-swingup-v0", "not a robot_rl MuJoCo task")])
def test_unsupported_tasks_name_the_reason(env_id, reason):
    env = E.make(env_id)
    assert reason in batch_support(env)
    env.close()
    with pytest.raises(ValueError, match=f"backend 'batched' cannot run .*{reason}"):
        make_vec(env_id, 2, backend="batched")


@pytest.mark.parametrize("threads", [1, pytest.param(3, marks=pytest.mark.skipif(not THREADS_OK, reason="no threads"))])
def test_attributes_and_calls_mid_episode_keep_the_batch_in_step(threads):
    # get_attr / call / set_attr see the envs' true per-step state (step counter, latency ring, sensor noise
    # position), and after a call that changes the envs the batch continues exactly as the single envs do.
    # threads=3: one env per thread (two workers).
    n, seed = 3, 2
    vec = make_vec("CartpoleSwingup-v0", n, seed=seed, randomization="reality", backend="batched", num_threads=threads)
    assert vec.num_threads == threads
    singles = [E.make("CartpoleSwingup-v0", seed=seed + i, randomization="reality") for i in range(n)]
    vec.reset(seed=seed)
    for i, e in enumerate(singles):
        e.reset(seed=seed + i)
    rng = np.random.default_rng(1)
    stats = {"r": np.zeros(n), "l": np.zeros(n, dtype=int)}
    _compare(vec, singles, 40, rng, stats)
    assert vec.get_attr("step_count") == (40,) * n
    assert vec.get_attr("randomization_info") == tuple(e.unwrapped.randomization_info for e in singles)
    # A single-env step through call() (not counted in the vector env's episode statistics): the block must
    # read the envs' state back afterwards.
    a = np.full((1,), 0.3, np.float32)
    stepped = vec.call("step", a)
    for e, (o, r, *_rest) in zip(singles, stepped):
        o_ref, r_ref, *_ = e.step(a)
        assert np.array_equal(o, o_ref) and r == pytest.approx(r_ref, **REWARD_TOL)
    vec.set_attr("randomization_scale", 0.5)
    for e in singles:
        e.unwrapped.randomization_scale = 0.5
    vec.set_attr("randomization_enabled", [True, False, True])
    singles[1].unwrapped.randomization_enabled = False
    assert _compare(vec, singles, 520, rng, stats) >= n
    assert vec.get_attr("step_count") == tuple(e.unwrapped.step_count for e in singles)
    vec.close()


@pytest.mark.parametrize("mode", MODES)
def test_physics_errors_match_single_envs(mode):
    compiled, threads = mode
    n, seed = 3, 5
    # No randomization: with action latency a non-finite action would only reach MuJoCo a step later.
    vec = make_vec("CartpoleSwingup-v0", n, seed=seed, backend="batched", compiled_step=compiled, num_threads=threads)
    singles = [E.make("CartpoleSwingup-v0", seed=seed + i, compiled_step=compiled) for i in range(n)]
    vec.reset(seed=seed)
    for i, e in enumerate(singles):
        e.reset(seed=seed + i)
    for d in (vec.get_attr("data")[0], singles[0].unwrapped.data):
        d.qvel[0] = np.nan  # env 0 diverges
    a = np.zeros((n, 1), np.float32)
    a[2] = np.nan  # env 2 gets a non-finite action (MuJoCo counts mjWARN_BADCTRL)
    obs, rew, term, _, infos = vec.step(a)
    assert list(infos["physics_error"]) == [True, False, True]
    assert list(term) == [True, False, True] and rew[0] == rew[2] == 0.0
    assert np.isfinite(obs).all() and np.isfinite(infos["final_obs"]).all()
    for i, e in enumerate(singles):
        o, r, te, tr, info = e.step(a[i])
        assert info["physics_error"] == infos["physics_error"][i] and r == pytest.approx(rew[i], **REWARD_TOL)
        assert np.array_equal(infos["final_obs"][i] if te else obs[i], o)
        if te:
            o, _ = e.reset()
        assert np.array_equal(obs[i], o)
    # The next steps are clean and still identical.
    assert _compare(vec, singles, 30, np.random.default_rng(3)) == 0
    vec.close()


def test_process_backend_runs_batched_blocks_equal_to_single_envs():
    # Two processes, each stepping a batched block; "reality" adds per-step terms (interval resampling, pushes).
    n, seed = 8, 9
    vec = make_vec("PendulumSwingup-v0", n, seed=seed, randomization="reality", num_workers=2, max_episode_steps=120)
    assert vec.backend == "process" and vec.batched
    singles = [E.make("PendulumSwingup-v0", seed=seed + i, randomization="reality", max_episode_steps=120)
               for i in range(n)]
    obs, _ = vec.reset(seed=seed)
    assert np.array_equal(obs, np.stack([e.reset(seed=seed + i)[0] for i, e in enumerate(singles)]))
    assert _compare(vec, singles, 260, np.random.default_rng(4)) == 2 * n
    assert vec.get_attr("step_count") == tuple(e.unwrapped.step_count for e in singles)
    vec.close()


def test_unseeded_envs_reset_later():
    # make_vec(seed=None) builds envs without a first reset (no episode state yet); reset(seed) then seeds them.
    vec = make_vec("CartpoleSwingup-v0", 2, seed=None, randomization="default", backend="batched")
    singles = [E.make("CartpoleSwingup-v0", randomization="default") for _ in range(2)]
    obs, _ = vec.reset(seed=[3, 8])
    assert np.array_equal(obs, np.stack([e.reset(seed=s)[0] for e, s in zip(singles, (3, 8))]))
    assert _compare(vec, singles, 20, np.random.default_rng(2)) == 0
    vec.close()


@pytest.mark.parametrize("env_id", BATCHED_TASKS)
def test_batched_reward_matches_the_scalar_reward(env_id):
    # _evaluate_batch (numpy over the batch) against _evaluate (Python floats, math) state by state: rewards to
    # REWARD_TOL, terminations and success flags exactly, also at the clipping edges of the action (|a| = 1, > 1,
    # NaN) and for angles within a few ulp of the termination / success thresholds (wrapped by 2 pi or not).
    u = E.make(env_id, seed=0).unwrapped
    rng = np.random.default_rng(11)
    n = 2000
    qpos = rng.normal(0.0, [1.0, 4.0][:u.model.nq], (n, u.model.nq))
    qvel = rng.normal(0.0, 6.0, (n, u.model.nv))
    act = rng.uniform(-1.5, 1.5, (n, 1))
    act[:8, 0] = [-1.0, 1.0, -1.5, 1.5, np.nan, 0.0, np.nextafter(1.0, 0.0), np.inf]
    th = int(u.joint_qpos_addresses[-1])  # the pole / pendulum hinge
    threshold = u.fall_angle if env_id == "CartpoleBalance-v0" else 0.1
    k = np.arange(-40, 41)
    edge = np.concatenate([threshold + k * 2.0 ** -52, -threshold + k * 2.0 ** -52,
                           threshold + 2 * math.pi + k * 2.0 ** -50, -threshold - 4 * math.pi + k * 2.0 ** -49])
    qpos[8:8 + len(edge), th] = edge
    reward, term, succ = u._evaluate_batch(qpos, qvel, act)
    assert reward.shape == term.shape == (n,) and reward.dtype == np.float64 and term.dtype == bool
    flips = 0
    for i in range(n):
        u.data.qpos[:], u.data.qvel[:] = qpos[i], qvel[i]
        r, te, su = u._evaluate(act[i].copy())
        assert reward[i] == pytest.approx(r, **REWARD_TOL), (i, qpos[i], qvel[i], act[i])
        assert term[i] == te, (i, qpos[i])
        assert (succ is None and su is None) or succ[i] == su, (i, qpos[i])
        flips += te if succ is None else su
    if env_id != "CartpoleSwingup-v0":  # (swing-up never terminates) the threshold is crossed in the sample
        assert 0 < flips < n


def test_num_threads_errors_name_the_problem():
    with pytest.raises(ValueError, match="num_threads must be an integer >= 1"):
        make_vec("CartpoleSwingup-v0", 4, backend="batched", num_threads=0)
    with pytest.raises(ValueError, match="needs backend 'batched'.*'sync'"):
        make_vec("CartpoleSwingup-v0", 4, backend="sync", num_threads=2)
    with pytest.raises(ValueError, match="needs backend 'batched'.*no batched reward"):
        make_vec("Reacher2-v0", 4, num_threads=2)
    with pytest.raises(ValueError, match="needs the compiled batch step on threads"):
        make_vec("CartpoleSwingup-v0", 4, num_threads=2, compiled_step=False)


def _thread_cpu_seconds(native_id: int) -> float:
    import os

    fields = open(f"/proc/self/task/{native_id}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


@pytest.mark.skipif(not THREADS_OK, reason="no threaded batch step here")
@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="reads a thread's CPU time from /proc")
def test_worker_threads_sleep_when_idle_and_stop_on_close_or_collection():
    """A worker thread spins for the next step only briefly (batched_threads.THREAD_SPIN_S), then sleeps in a futex
    wait: an idle vector env costs no CPU, steps after the idle time still work, close() ends the threads, and so does
    dropping an unclosed vector env."""
    import gc
    import time

    from robot_rl.envs import batched_threads

    vec = make_vec("CartpoleSwingup-v0", 4, seed=0, num_threads=2)
    assert vec.backend == "batched" and vec.num_threads == 2
    ref = make_vec("CartpoleSwingup-v0", 4, seed=0)
    vec.reset(seed=0)
    ref.reset(seed=0)
    a = np.full((4, 1), 0.5, np.float32)
    vec.step(a)
    ref.step(a)
    (th,) = vec._blocks[0]._threads
    time.sleep(0.2)  # past THREAD_SPIN_S (2 ms)
    before = _thread_cpu_seconds(th.native_id)
    time.sleep(0.5)
    idle = _thread_cpu_seconds(th.native_id) - before
    assert idle < 0.1, f"worker thread used {idle:.2f} CPU-s while idle for 0.5 s"
    assert np.array_equal(vec.step(a)[0], ref.step(a)[0])  # woken from its sleep, still exact
    vec.close()
    assert not th.is_alive()
    vec = make_vec("CartpoleSwingup-v0", 4, seed=0, num_threads=2)
    (th,) = vec._blocks[0]._threads
    del vec
    gc.collect()
    th.join(timeout=5)
    assert not th.is_alive(), "an unclosed, dropped vector env left its worker thread running"
    assert batched_threads.THREAD_SPIN_S < 0.1
    ref.close()


@pytest.mark.skipif(not THREADS_OK, reason="no threaded batch step here")
def test_forked_child_steps_a_threaded_vector_env_in_its_one_thread():
    # A fork copies only the forking thread: the child's block steps every env itself, with the same results.
    import multiprocessing as mp

    vec = make_vec("CartpoleSwingup-v0", 4, seed=3, randomization="default", num_threads=2)
    vec.reset(seed=3)
    a = np.full((4, 1), -0.25, np.float32)
    ctx = mp.get_context("fork")
    q = ctx.Queue()

    def child():
        q.put((vec._blocks[0].num_threads, [vec.step(a)[0] for _ in range(5)][-1]))

    p = ctx.Process(target=child)
    p.start()
    threads, obs_child = q.get(timeout=60)
    p.join(timeout=10)
    assert p.exitcode == 0 and threads == 1
    for _ in range(5):
        obs = vec.step(a)[0]
    assert np.array_equal(obs, obs_child)
    vec.close()
