"""Randomization: ranges honored, nominal model restored, strict config errors, latency, pushes, curriculum."""

import numpy as np
import pytest

import robot_rl.envs as E
from robot_rl.core.config import ConfigError, parse_yaml
from robot_rl.envs.curriculum import AutoCurriculum
from robot_rl.envs.randomization_config import load_randomization

MODEL_ARRAYS = ("body_mass", "body_inertia", "body_ipos", "geom_friction", "dof_damping", "dof_armature",
                "dof_frictionloss", "actuator_gainprm", "actuator_biasprm", "body_subtreemass", "dof_invweight0")


def _snapshot(model):
    return {k: getattr(model, k).copy() for k in MODEL_ARRAYS}


RANGES = {
    "body_mass": {"scale": [0.5, 0.6]},
    "friction": {"scale": [1.5, 2.0]},
    "joint_damping": {"scale": [2.0, 3.0], "offset": [0.1, 0.2]},
    "armature": {"offset": [0.01, 0.02]},
    "frictionloss": {"offset": [0.03, 0.04]},
    "actuator_gain": {"scale": [0.7, 0.8]},
    "com_offset": {"max_offset_m": 0.05},
    "action_latency": {"steps": [2, 3]},
}


@pytest.mark.parametrize("env_id", ["CartpoleSwingup-v0", "ArmReach-v0", "Reacher2-v0"])
def test_sampled_values_inside_declared_ranges(env_id):
    env = E.make(env_id, randomization=dict(RANGES), seed=0)
    u = env.unwrapped
    env.unwrapped.randomization_enabled = False
    env.reset()
    nom = _snapshot(u.model)
    u.randomization_enabled = True
    for seed in range(5):
        _, info = env.reset(seed=seed)
        r = info["randomization"]
        m = u.model
        body = slice(1, None)
        assert np.all((m.body_mass[body] >= 0.5 * nom["body_mass"][body] - 1e-12)
                      & (m.body_mass[body] <= 0.6 * nom["body_mass"][body] + 1e-12))
        ratio = m.geom_friction[:, 0] / nom["geom_friction"][:, 0]
        assert np.all((ratio >= 1.5) & (ratio <= 2.0))
        assert np.all(m.dof_damping >= 2.0 * nom["dof_damping"] + 0.1 - 1e-12)
        assert np.all(m.dof_damping <= 3.0 * nom["dof_damping"] + 0.2 + 1e-12)
        assert np.all((m.dof_armature - nom["dof_armature"] >= 0.01 - 1e-12)
                      & (m.dof_armature - nom["dof_armature"] <= 0.02 + 1e-12))
        assert np.all((m.dof_frictionloss >= 0.03) & (m.dof_frictionloss <= 0.04))
        g = m.actuator_gainprm[:, 0] / nom["actuator_gainprm"][:, 0]
        assert np.all((g >= 0.7) & (g <= 0.8))
        assert np.all(np.abs(m.body_ipos - nom["body_ipos"]) <= 0.05 + 1e-12)
        assert r["action_latency_steps"] in (2, 3)
        for k, v in r.items():
            if k.startswith("body_mass_scale/"):
                assert 0.5 <= v <= 0.6
            if k.startswith("actuator_gain_scale/"):
                assert 0.7 <= v <= 0.8
        assert any(k.startswith("com_offset/") for k in r)


@pytest.mark.parametrize("scale", [1.0, 0.4])
def test_reset_sample_equals_one_uniform_draw_per_range_in_term_order(scale):
    """The sampler draws every term with one ``rng.random`` call: the values must be those of ``Generator.uniform``
    per range (scale, then offset, per term in the documented order) from the env's seeded stream, and the model
    must hold nominal * scale + offset (bit for bit).
    """
    from gymnasium.utils import seeding

    profile = {"body_mass": {"scale": [0.7, 1.3], "offset": [0.0, 0.01]},
               "body_inertia": {"scale": [0.8, 1.25], "offset": [0.0, 0.001]},
               "com_offset": {"max_offset_m": 0.02}, "friction": {"scale": [0.5, 1.5]},
               "joint_damping": {"scale": [0.6, 1.5], "offset": [0.0, 0.02]}, "armature": {"scale": [0.7, 1.4]},
               "frictionloss": {"offset": [0.0, 0.01]}, "actuator_gain": {"scale": [0.85, 1.1]}}
    env = E.make("Reacher2-v0", randomization=profile, seed=0)
    u = env.unwrapped
    u.randomization_scale = scale
    nom = {k: v.copy() for k, v in u.randomizer._nominal.items()}
    _, info = env.reset(seed=11)
    r = info["randomization"]
    rng = seeding.np_random(11)[0]
    targets = u.randomizer._targets

    def draw(lo_hi, center, k):
        lo, hi = (center + scale * (x - center) for x in lo_hi)
        return rng.uniform(lo, hi, size=k)

    expected = {}
    for term in ("body_mass", "body_inertia", "com_offset", "friction", "joint_damping", "armature", "frictionloss",
                 "actuator_gain"):
        idx, names = targets[term]
        if term == "com_offset":
            off = rng.uniform(-0.02 * scale, 0.02 * scale, size=(len(idx), 3))
            assert np.array_equal(u.model.body_ipos[idx], nom["body_ipos"][idx] + off)
            expected.update({f"com_offset/{n}/{a}": float(v) for n, row in zip(names, off) for a, v in zip("xyz", row)})
            continue
        cfg = profile[term]
        s = draw(cfg.get("scale", [1.0, 1.0]), 1.0, len(idx))
        o = draw(cfg.get("offset", [0.0, 0.0]), 0.0, len(idx))
        expected.update({f"{term}_scale/{n}": float(v) for n, v in zip(names, s) if "scale" in cfg})
        expected.update({f"{term}_offset/{n}": float(v) for n, v in zip(names, o) if "offset" in cfg})
        if term == "joint_damping":
            assert np.array_equal(u.model.dof_damping[idx], np.maximum(nom["dof_damping"][idx] * s + o, 0.0))
        if term == "friction":
            assert np.array_equal(u.model.geom_friction[idx, 0], np.maximum(nom["geom_friction"][idx, 0] * s + o, 0))
    assert {k: v for k, v in r.items() if k in expected} == expected
    assert set(expected) <= set(r)


@pytest.mark.parametrize("env_id", ["CartpoleSwingup-v0", "ArmReach-v0", "dmc-cheetah-run-v0"])
def test_nominal_model_restored_exactly_when_switched_off(env_id):
    env = E.make(env_id, randomization="reality", seed=0)
    u = env.unwrapped
    u.randomization_enabled = False
    env.reset(seed=0)
    nominal = _snapshot(u.model)
    u.randomization_enabled = True
    env.reset(seed=1)
    for _ in range(120):  # crosses reality.yaml's interval resampling (100 steps)
        env.step(env.action_space.sample())
    assert any(not np.array_equal(getattr(u.model, k), nominal[k]) for k in MODEL_ARRAYS)
    u.randomization_enabled = False
    _, info = env.reset(seed=2)
    assert info["randomization"] == {}
    for k, v in nominal.items():
        assert np.array_equal(getattr(u.model, k), v), k


def test_off_equals_no_randomizer_at_all():
    plain = E.make("CartpoleSwingup-v0", seed=3)
    off = E.make("CartpoleSwingup-v0", randomization="reality", seed=3)
    off.unwrapped.randomization_enabled = False
    o1, _ = plain.reset(seed=3)
    o2, _ = off.reset(seed=3)
    for _ in range(50):
        a = np.array([0.3], np.float32)
        o1, *_ = plain.step(a)
        o2, *_ = off.step(a)
    assert np.array_equal(o1, o2)


def test_action_latency_delays_the_command():
    env = E.make("PendulumSwingup-v0", randomization={"action_latency": {"steps": [2, 2]}}, seed=0)
    u = env.unwrapped
    env.reset(seed=0)
    env.step(np.ones(1, np.float32))
    assert u.data.ctrl[0] == 0.0  # step 0: the command arrives 2 steps later
    env.step(-np.ones(1, np.float32))
    assert u.data.ctrl[0] == 0.0
    env.step(np.zeros(1, np.float32))
    assert u.data.ctrl[0] == pytest.approx(2.0)  # the first command (+1 -> +2 N m)
    env.step(np.zeros(1, np.float32))
    assert u.data.ctrl[0] == pytest.approx(-2.0)


def test_pushes_and_interval_resampling():
    cfg = {"push": {"max_force_n": 5.0, "interval_steps": [3, 3], "duration_steps": 1},
           "joint_damping": {"offset": [0.0, 1.0], "mode": "interval", "interval_steps": 4}}
    env = E.make("CartpoleSwingup-v0", randomization=cfg, seed=0)
    u = env.unwrapped
    _, info = env.reset(seed=0)
    first = dict(info["randomization"])
    seen_push, damping = False, [u.model.dof_damping.copy()]
    for _ in range(10):
        _, _, _, _, info = env.step(np.zeros(1, np.float32))
        seen_push |= "push/force_n" in info["randomization"]
        damping.append(u.model.dof_damping.copy())
    assert seen_push
    assert 0.0 <= info["randomization"]["push/force_n"] <= 5.0
    assert not np.array_equal(damping[0], damping[-1])
    assert first != info["randomization"]


def test_observation_noise_changes_obs_but_not_state():
    cfg = {"observation_noise": {"position_std": 0.1, "velocity_std": 0.1}}
    clean = E.make("PendulumSwingup-v0", seed=0)
    noisy = E.make("PendulumSwingup-v0", randomization=cfg, seed=0)
    o1, _ = clean.reset(seed=0)
    noisy.unwrapped.randomization_enabled = True
    o2, _ = noisy.reset(seed=0)
    assert not np.array_equal(o1, o2)


def test_curriculum_scale_zero_means_nominal():
    env = E.make("CartpoleSwingup-v0", randomization="reality", seed=0)
    u = env.unwrapped
    u.randomization_enabled = False
    env.reset()
    nominal = _snapshot(u.model)
    u.randomization_enabled = True
    cur = AutoCurriculum(threshold=100.0, step=0.5)
    cur.apply(env)
    env.reset(seed=5)
    for k in ("body_mass", "geom_friction", "dof_damping", "actuator_gainprm"):
        assert np.allclose(getattr(u.model, k), nominal[k]), k
    assert cur.update(50.0) == 0.0
    assert cur.update(150.0) == 0.5
    assert cur.update(150.0) == 1.0 and cur.update(150.0) == 1.0
    cur.apply(env)
    assert u.randomization_scale == 1.0
    shrink = AutoCurriculum(threshold=10.0, step=0.25, scale=0.5, shrink_below=5.0)
    assert shrink.update(1.0) == 0.25
    with pytest.raises(ValueError, match="shrink_below"):
        AutoCurriculum(threshold=1.0, shrink_below=2.0)


@pytest.mark.parametrize("text, key_path", [
    ("body_mass: {scael: [0.9, 1.1]}", "body_mass.scael"),
    ("bodymass: {scale: [0.9, 1.1]}", "bodymass"),
    ("friction: {scale: [1.2, 0.8]}", "friction"),
    ("friction: {scale: [0.8, 1.2, 1.3]}", "friction"),
    ("action_latency: {steps: [0, 1.5]}", "action_latency.steps[1]"),
    ("joint_damping: {scale: [0.9, 1.1], mode: sometimes}", "joint_damping.mode"),
    ("joint_damping: {scale: [0.9, 1.1], mode: interval}", "joint_damping"),
    ("observation_noise: {position_std: -1.0}", "observation_noise"),
    ("body_mass: {scale: [.nan, 1.0]}", "body_mass.scale[0]"),
])
def test_strict_config_errors_name_the_key_path(text, key_path):
    with pytest.raises(ConfigError) as exc:
        load_randomization(parse_yaml(text))
    assert exc.value.key_path == key_path, str(exc.value)
    assert key_path in str(exc.value)


def test_unmatched_target_and_missing_profile_are_errors():
    with pytest.raises(ValueError, match=r"body_mass.targets: 'nothing_.*' matches none"):
        E.make("CartpoleSwingup-v0", randomization={"body_mass": {"targets": "nothing_.*", "scale": [1, 2]}})
    with pytest.raises(ConfigError, match="not found"):
        E.make("CartpoleSwingup-v0", randomization="no_such_profile")


def test_shipped_profiles_load_for_every_robot():
    for name in ("default", "reality"):
        cfg = load_randomization(name)
        assert cfg.body_mass is not None
        for env_id in E.TASKS:
            if not E.is_batched(env_id):  # (legged tasks: LocomotionRandomization)
                E.make(env_id, randomization=cfg, seed=0)


def test_switches_validate():
    env = E.make("CartpoleSwingup-v0", seed=0)
    with pytest.raises(ValueError, match="without a randomization profile"):
        env.unwrapped.randomization_enabled = True
    env.unwrapped.randomization_enabled = False
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        E.make("CartpoleSwingup-v0", randomization="default").unwrapped.randomization_scale = 1.5


def test_mass_and_inertia_terms_compose():
    cfg = {"body_mass": {"scale": [1.5, 1.5]}, "body_inertia": {"scale": [2.0, 2.0]}}
    env = E.make("CartpoleSwingup-v0", randomization=cfg, seed=0)
    u = env.unwrapped
    u.randomization_enabled = False
    env.reset()
    nominal = _snapshot(u.model)
    u.randomization_enabled = True
    env.reset(seed=1)
    assert np.allclose(u.model.body_mass[1:], 1.5 * nominal["body_mass"][1:])
    assert np.allclose(u.model.body_inertia[1:], 3.0 * nominal["body_inertia"][1:])  # density x extra factor


def test_wide_latency_is_default_with_more_latency():
    """sim/randomization/wide_latency.yaml is ``base: default`` plus a wider latency range, nothing else."""
    import dataclasses

    default, wide = load_randomization("default"), load_randomization("wide_latency")
    assert default.action_latency.steps == (0, 1) and wide.action_latency.steps == (0, 2)
    assert dataclasses.replace(wide, action_latency=default.action_latency) == default


def test_profile_base_merges_terms_and_drops_nulls(tmp_path):
    (tmp_path / "parent.yaml").write_text("body_mass: {targets: all, scale: [0.8, 1.2]}\n"
                                          "friction: {scale: [0.5, 1.5]}\naction_latency: {steps: [0, 1]}\n")
    (tmp_path / "child.yaml").write_text(f"base: {tmp_path / 'parent.yaml'}\nbody_mass: {{scale: [0.9, 1.1]}}\n"
                                         "friction: null\npush: {interval_steps: [10, 20], max_force_n: 5.0}\n")
    (tmp_path / "grandchild.yaml").write_text(f"base: {tmp_path / 'child.yaml'}\naction_latency: {{steps: [1, 3]}}\n")
    cfg = load_randomization(str(tmp_path / "grandchild.yaml"))
    assert cfg.body_mass.scale == (0.9, 1.1) and cfg.body_mass.targets == "all"   # fields merged into the base's
    assert cfg.friction is None                                                   # null drops the base's term
    assert cfg.push is not None and cfg.action_latency.steps == (1, 3)


@pytest.mark.parametrize("text, match", [
    ("base: no_such_profile\n", "no_such_profile"),
    ("base: [default]\n", "base: expected a profile name or path"),
    ("base: SELF\n", "profiles include each other"),
    ("base: default\nfriction: {scale: [1.2, 0.8]}\n", "friction: scale: lower bound 1.2 > upper bound 0.8"),
])
def test_profile_base_errors_name_the_file(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text.replace("SELF", str(path)))
    with pytest.raises(ConfigError, match=match) as info:
        load_randomization(str(path))
    assert "bad.yaml" in str(info.value)
