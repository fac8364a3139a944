"""The compiled env step (robot_rl.envs.fast_step) returns exactly what the Python step returns."""

import math
import warnings

import numpy as np
import pytest

import robot_rl.envs as E
from robot_rl.core import mujoco_jit
from robot_rl.envs import fast_step

pytestmark = pytest.mark.skipif(not mujoco_jit.AVAILABLE, reason=str(mujoco_jit.unavailable_reason()))

ELIGIBLE = ["CartpoleSwingup-v0", "CartpoleBalance-v0", "PendulumSwingup-v0"]


def _same(x, y) -> bool:
    if isinstance(x, np.ndarray):
        return isinstance(y, np.ndarray) and x.dtype == y.dtype and np.array_equal(x, y, equal_nan=True)
    if isinstance(x, dict):
        return list(x) == list(y) and all(_same(x[k], y[k]) for k in x)
    if isinstance(x, (tuple, list)):
        return len(x) == len(y) and all(_same(a, b) for a, b in zip(x, y))
    return type(x) is type(y) and (x == y or (x != x and y != y))


def _rollout(env_id, randomization, compiled, steps=1100, seed=3):
    env = E.make(env_id, randomization=randomization, seed=seed, compiled_step=compiled)
    rng = np.random.default_rng(0)
    out = [env.reset(seed=seed)]
    for i in range(steps):
        a = rng.uniform(-1.2, 1.2, env.action_space.shape).astype(np.float32)
        if i % 7 == 3:
            a = a.astype(np.float64)
        elif i % 11 == 5:
            a = a.tolist()
        elif i % 13 == 6:  # a strided view
            a = np.repeat(a, 2)[::2]
        elif i % 17 == 8:  # read-only
            a.flags.writeable = False
        elif i % 19 == 9:  # a batch of one
            a = a[None]
        step = env.step(a)
        out.append(step)
        if step[2] or step[3]:
            out.append(env.reset())
    return env, out


@pytest.mark.parametrize("randomization", [None, "default", "reality"])
@pytest.mark.parametrize("env_id", ELIGIBLE)
def test_compiled_step_is_bit_identical_to_the_python_step(env_id, randomization):
    env_c, compiled = _rollout(env_id, randomization, None)
    env_p, python = _rollout(env_id, randomization, False)
    assert env_c.unwrapped.compiled_step and not env_p.unwrapped.compiled_step
    assert len(compiled) == len(python)
    for i, (c, p) in enumerate(zip(compiled, python)):
        assert _same(c, p), f"{env_id} {randomization}: entry {i} differs: compiled {c} vs python {p}"
    # Fresh observation arrays every step (callers keep them).
    o1, *_ = env_c.step(np.zeros(1, np.float32))
    o2, *_ = env_c.step(np.zeros(1, np.float32))
    assert o1 is not o2 and not np.shares_memory(o1, o2)
    # The other action forms went through the float64 kernel: no variant was compiled mid-episode.
    assert len(env_c.unwrapped._kernel.signatures) == 2


def test_compiled_step_rejects_a_wrong_action_length():
    env = E.make("CartpoleSwingup-v0", randomization="default", seed=0)
    env.step(np.zeros(1, np.float32))
    for bad in (np.zeros(2, np.float32), np.zeros(3), [0.1, 0.2]):
        with pytest.raises(ValueError, match=r"action must have shape \(1,\)"):
            env.step(bad)
    assert env.unwrapped.step_count == 1


@pytest.mark.parametrize("profile", ["default", "reality"])
def test_switching_randomization_mid_episode_matches_the_python_step(profile):
    # randomization_enabled takes effect at once for the noise terms (the compiled step's table follows it).
    def run(compiled):
        env = E.make("CartpoleSwingup-v0", randomization=profile, seed=4, compiled_step=compiled)
        out = []
        for i in range(60):
            if i in (20, 40):
                env.unwrapped.randomization_enabled = i == 40
            out.append(env.step(np.array([0.3 * math.sin(i)], np.float32)))
        return out

    assert _same(run(None), run(False))


def test_compiled_step_divergence_matches_the_python_step():
    def run(compiled):
        env = E.make("CartpoleSwingup-v0", randomization="default", seed=1, compiled_step=compiled)
        out = [env.step(np.array([0.2], np.float32)) for _ in range(3)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out.append(env.step(np.array([np.nan], np.float32)))
        out.append(env.reset())
        out += [env.step(np.array([0.1], np.float32)) for _ in range(3)]
        return out

    compiled, python = run(True), run(False)
    assert compiled[3][4]["physics_error"] and compiled[3][4]["error"] == "non-finite action" and compiled[3][2]
    assert _same(compiled, python)


def test_compiled_step_refused_where_a_task_cannot_use_it():
    arm = E.make("ArmReach-v0", seed=0)
    assert not arm.unwrapped.compiled_step  # auto: gravity compensation hook -> Python step
    with pytest.raises(ValueError, match="ArmReach: compiled_step=True is not possible: it overrides "
                                         "_before_physics"):
        E.make("ArmReach-v0", compiled_step=True)
    with pytest.raises(ValueError, match="compiled_step=True is not possible: its observation needs forward"):
        E.make("Reacher2-v0", compiled_step=True)


def test_env_falls_back_to_the_python_step_when_the_kernel_cannot_be_built(monkeypatch):
    monkeypatch.setattr(fast_step, "_kernels", {})
    monkeypatch.setattr(fast_step, "_reason", None)

    def broken(lib, reward_factory):
        raise RuntimeError("no LLVM today")

    monkeypatch.setattr(fast_step, "_compile", broken)
    env = E.make("CartpoleSwingup-v0", randomization="default", seed=2)
    assert env.unwrapped.compiled_step  # decided at the first step
    with pytest.warns(RuntimeWarning, match="no LLVM today; envs use the Python step"):
        got = [env.step(np.array([0.3], np.float32)) for _ in range(5)]
    assert not env.unwrapped.compiled_step
    ref = E.make("CartpoleSwingup-v0", randomization="default", seed=2, compiled_step=False)
    assert _same(got, [ref.step(np.array([0.3], np.float32)) for _ in range(5)])
    with pytest.raises(RuntimeError, match="compiled_step=True but building the compiled env step failed"):
        E.make("CartpoleSwingup-v0", seed=2, compiled_step=True).step(np.zeros(1, np.float32))


def test_warm_up_leaves_the_state_unchanged():
    env = E.make("PendulumSwingup-v0", seed=4)
    u = env.unwrapped
    before = (u.get_state(), u.data.time, u.data.warning.number.copy(), u.data.ctrl.copy())
    u._build_kernel()
    after = (u.get_state(), u.data.time, u.data.warning.number.copy(), u.data.ctrl.copy())
    assert _same(before, after) and math.isfinite(u.data.time)
