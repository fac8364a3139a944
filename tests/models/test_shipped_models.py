"""The shipped models in models/: each one listed in models/README.md loads through the robot runtime
against its robot profile, carries its recipe and metrics, comes from the config its README section names, and
performs in the real MuJoCo env.

A model is "shipped" when models/README.md has a ``### models/<name>`` section; the tests are parametrized over those
sections, so a listed model whose files are missing fails (nothing is skipped). Performance checks (held-out seeds
>= 2e9, never used in training, export parity or the training-time evaluation):

* ``arm_reach_gciql``: the ONNX policy (raw observation -> torques [N m]; mapped back to the env's normalized action
  with the sidecar's command limits) reaches held-out goals: end effector within ``ARM_SUCCESS_M`` of the goal at the
  end of the 2 s episode in >= ``ARM_MIN_SUCCESS`` of ``ARM_GOALS`` episodes.
* ``cartpole_pets_dynamics``: the member-mean predicted delta on fresh random-force transitions has a normalized
  RMSE (RMSE / RMS of the true delta, per state dim) below ``PETS_MAX_NRMSE`` in every dim on the transitions with
  the cart clear of the rail end stops (|slider| < ``RAIL_FREE_M`` before and after; the PETS data rarely hits the
  stops), i.e. far better than predicting no change (1.0 by construction), and below 1.0 on all transitions.
* ``go2_joystick_ppo``: the ONNX policy (47 IMU / joint / command observations -> 12 joint position targets [rad];
  mapped back to the env's normalized action with the sidecar's center / half_range) walks on ``GO2_SAMPLES`` held-out
  reality samples (pushes, joint friction, latency, sensor noise) for ``GO2_SECONDS`` per command: forward 0.5 m/s
  tracked within ``GO2_MAX_VX_MAE`` and +0.5 rad/s turning within ``GO2_MAX_YAW_MAE`` (mean absolute errors after
  2 s), the base at least ``GO2_MIN_HEIGHT`` high, at most ``GO2_MAX_FALLS`` falls.
* ``panda_reach_gciql`` and ``panda_reach_sac``: the ONNX policy (20 joint / end-effector / goal observations -> 7
  joint position targets [rad], delta actions: mapped back to the env's normalized action as (target - observed
  joints) / action_scale) brings the end effector within 2 cm of the goal on >= ``PANDA_MIN_REACHED`` of
  ``PANDA_GOALS`` held-out goals, each under its own held-out reality sample, and holds it there for the last 0.5 s
  of the 2 s episode on >= ``PANDA_MIN_HELD[name]`` (the SAC policy reaches but does not hold as well under reality
  samples: models/README.md).
* ``cartpole_swingup_sac``: from the hanging start the pole is swung up and held (cos(hinge) > 0.95) for >= 90 % of
  the last 2 s of a 10 s episode, on each of ``SAC_EPISODES`` held-out seeds, in the nominal sim and with the
  training's domain randomization (the sidecar's, ``wide_latency``).

``test_performance_bar_rejects_doing_nothing`` shows the bars measure something: a zero command fails them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from robot_rl.core.profile import load_profile
from robot_rl.envs import make
from robot_rl.export.runtime import ArtifactError, OnnxEnsemble, OnnxPolicy, profile_digest

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"
README = MODELS / "README.md"
HELD_OUT_SEED = 2 * 10**9

ARM_SUCCESS_M, ARM_GOALS, ARM_MIN_SUCCESS = 0.1, 40, 0.6
PETS_MAX_NRMSE = 0.15
RAIL_FREE_M = 1.5
SAC_EPISODES = 3
GO2_SAMPLES, GO2_SECONDS, GO2_MAX_VX_MAE, GO2_MAX_YAW_MAE, GO2_MAX_FALLS = 5, 10.0, 0.15, 0.2, 1
PANDA_GOALS, PANDA_MIN_REACHED, PANDA_HOLD_S = 20, 0.95, 0.5
PANDA_MIN_HELD = {"panda_reach_gciql": 0.9, "panda_reach_sac": 0.5}
GO2_MIN_HEIGHT = 0.22  # [m] walking base height (standing pose 0.29 m; a crouched gait walks at 0.16-0.19 m)

# name -> (artifact kind, robot profile, env id)
KNOWN = {
    "arm_reach_gciql": ("policy", "arm7", "robot_rl/ArmReach-v0"),
    "cartpole_pets_dynamics": ("dynamics", "cartpole", "robot_rl/CartpoleSwingup-v0"),
    "cartpole_swingup_sac": ("policy", "cartpole", "robot_rl/CartpoleSwingupRail-v0"),
    "go2_joystick_ppo": ("policy", "go2", "robot_rl/Go2Joystick-v0"),
    "panda_reach_gciql": ("policy", "panda", "robot_rl/PandaReach-v0"),
    "panda_reach_sac": ("policy", "panda", "robot_rl/PandaReach-v0"),
}


def readme_sections() -> dict[str, str]:
    """``### models/<name>`` sections of models/README.md -> their text."""
    text = README.read_text()
    parts = re.split(r"^### models/(\S+)\s*$", text, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


SHIPPED = sorted(readme_sections()) if README.exists() else []


def section_config(name: str) -> Path:
    """The ``config: config/<file>.yaml`` line of the model's README section."""
    m = re.search(r"^config: (config/\S+\.yaml)\s*$", readme_sections()[name], flags=re.M)
    assert m, f"models/README.md section models/{name} has no 'config: config/....yaml' line"
    return ROOT / m.group(1)


def load_sidecar(name: str) -> dict:
    kind = KNOWN[name][0]
    path = MODELS / name / ("policy.json" if kind == "policy" else "dynamics.json")
    assert path.is_file(), f"{path} missing: the model is listed in models/README.md but not shipped"
    return json.loads(path.read_text())


def normalized_action(sidecar: dict, action: np.ndarray) -> np.ndarray:
    """Robot command units -> the env's normalized action in [-1, 1] (inverse of the graph's affine map)."""
    lo, hi = np.asarray(sidecar["action"]["min"]), np.asarray(sidecar["action"]["max"])
    return (2.0 * (action - lo) / (hi - lo) - 1.0).astype(np.float32)


def test_readme_lists_only_known_models():
    assert README.is_file(), "models/README.md missing"
    assert SHIPPED, "models/README.md lists no '### models/<name>' section"
    unknown = sorted(set(SHIPPED) - set(KNOWN))
    assert not unknown, f"models/README.md lists models without a check here: {unknown}"
    script = ROOT / "scripts" / "make_models.sh"
    assert script.is_file(), "scripts/make_models.sh missing"
    for name in SHIPPED:
        assert f"models/{name}" in script.read_text(), f"scripts/make_models.sh does not produce models/{name}"


@pytest.mark.parametrize("name", SHIPPED)
def test_sidecar_recipe_and_metrics(name):
    """Sidecar names the robot, the recipe config (same content hash as the config file today) and metrics."""
    kind, profile_name, env_id = KNOWN[name]
    sc = load_sidecar(name)
    assert sc["env_id"] == env_id
    assert sc["robot"]["profile"] == profile_name
    assert sc["robot"]["digest"] == profile_digest(load_profile(profile_name)), \
        f"models/{name} was exported for a different hardware/{profile_name}.yaml contract than today's"
    assert sc["metrics"], f"models/{name}: empty metrics in the sidecar"
    assert all(sc["checks"][k] for k in ("onnx_checker_full", "deterministic", "outputs_finite"))
    assert sc["checks"]["parity"]["passed"] and sc["checks"]["parity"]["n"] >= 1000
    cfg_path = section_config(name)
    assert cfg_path.is_file(), f"{cfg_path} (named in models/README.md) missing"
    assert f"models/{name}" in readme_sections()[name] and "```" in readme_sections()[name], \
        f"models/README.md section models/{name} has no command block"
    from robot_rl.core.config import config_hash, load_config

    if kind == "policy":
        from robot_rl.train.config import load_experiment

        expected = config_hash(load_experiment(cfg_path))
    else:
        from robot_rl.algos.pets import PetsConfig

        expected = config_hash(load_config(PetsConfig, cfg_path))
    assert sc["training"]["config_hash"] == expected, \
        f"models/{name} was trained from a config that differs from today's {cfg_path.relative_to(ROOT)}"


@pytest.mark.parametrize("name", SHIPPED)
def test_refuses_the_other_robot(name):
    """Loading against a profile other than the model's is refused by the runtime (the profile check is active)."""
    kind, profile_name, _ = KNOWN[name]
    other = load_profile("cartpole" if profile_name != "cartpole" else "arm7")
    loader = OnnxPolicy if kind == "policy" else OnnxEnsemble
    with pytest.raises(ArtifactError, match="robot profile|does not match"):
        loader(MODELS / name, other)


def _arm_success(name: str, zero_torque: bool = False) -> float:
    """Success rate on ``ARM_GOALS`` held-out goals with the ONNX policy (or zero torque: the floor of the check)."""
    from robot_rl.scale.envs import obs_names_of

    env = make("robot_rl/ArmReach-v0", distance_threshold=ARM_SUCCESS_M)
    obs, _ = env.reset(seed=HELD_OUT_SEED)
    n_obs = obs["observation"].shape[0] + obs["desired_goal"].shape[0]
    policy = OnnxPolicy(MODELS / name, load_profile("arm7"), obs_names=obs_names_of(env, n_obs))
    sc = policy.sidecar
    hits = []
    for seed in range(HELD_OUT_SEED, HELD_OUT_SEED + ARM_GOALS):
        obs, _ = env.reset(seed=seed)
        done = False
        while not done:
            torque = policy(np.concatenate([obs["observation"], obs["desired_goal"]]))
            assert np.all(np.abs(torque) <= np.asarray(sc["action"]["max"]) + 1e-6)
            if zero_torque:
                torque = np.zeros_like(torque)
            obs, _, terminated, truncated, info = env.step(normalized_action(sc, torque))
            done = terminated or truncated
        hits.append(bool(info["is_success"]))
    env.close()
    return float(np.mean(hits))


def _panda_reach(name: str, zero_action: bool = False) -> dict:
    """The ONNX policy (or zero actions: holding the start pose) on ``PANDA_GOALS`` held-out goals, each under its
    own held-out reality sample: ``reached`` (share of episodes that came within 2 cm), ``held`` (share that ended
    with ``PANDA_HOLD_S`` of unbroken success) and the ``final`` and ``closest`` distances [m]."""
    from robot_rl.scale.envs import obs_names_of

    env = make("robot_rl/PandaReach-v0", randomization="reality")
    u = env.unwrapped
    policy = OnnxPolicy(MODELS / name, load_profile("panda"), obs_names=obs_names_of(env, len(u.obs_names) + 3))
    reference = [u.obs_names.index(n) for n in policy.sidecar["action"]["reference"]]
    need = round(PANDA_HOLD_S / u.control_dt)
    held, final, closest = [], [], []
    for seed in range(HELD_OUT_SEED, HELD_OUT_SEED + PANDA_GOALS):
        obs, _ = env.reset(seed=seed)
        streak, done, d_min = 0, False, np.inf
        while not done:
            target = policy(np.concatenate([obs["observation"], obs["desired_goal"]]))
            a = (target - obs["observation"][reference]) / u.action_scale
            obs, _, terminated, truncated, info = env.step(np.zeros(7, np.float32) if zero_action else a)
            streak = streak + 1 if info["is_success"] else 0
            d_min = min(d_min, float(np.linalg.norm(u.end_effector() - u.goal)))
            done = terminated or truncated
        held.append(streak >= need)
        final.append(float(np.linalg.norm(u.end_effector() - u.goal)))
        closest.append(d_min)
    env.close()
    return {"reached": float(np.mean(np.array(closest) <= 0.02)), "held": float(np.mean(held)), "final": final,
            "closest": closest}


def _pets_nrmse(name: str) -> tuple[np.ndarray, np.ndarray]:
    ens = OnnxEnsemble(MODELS / name, load_profile("cartpole"))
    sc = ens.sidecar
    assert ens.state_names == ("slider", "hinge", "slider_vel", "hinge_vel") and ens.target == "delta"
    assert sc["action"]["units"] == "N" and sc["control_dt"] == load_profile("cartpole").control_period_s
    env = make("robot_rl/CartpoleSwingup-v0", max_episode_steps=150)
    sim = env.unwrapped
    lo, hi = sim.model.actuator_ctrlrange[:, 0], sim.model.actuator_ctrlrange[:, 1]
    xs, us, xn = [], [], []
    for ep in range(4):
        rng = np.random.default_rng(HELD_OUT_SEED + ep)
        env.reset(seed=HELD_OUT_SEED + ep)
        for _ in range(150):
            x, u = sim.get_state(), rng.uniform(lo, hi)
            env.step((2 * (u - lo) / (hi - lo) - 1).astype(np.float32))
            xs.append(x)
            us.append(u)
            xn.append(sim.get_state())
    env.close()
    x, u, x_next = np.asarray(xs), np.asarray(us), np.asarray(xn)
    mean, logvar = ens(x, u)
    assert mean.shape == (ens.n_members, len(x), 4) and np.isfinite(logvar).all()
    err, true = mean.mean(axis=0) - (x_next - x), x_next - x
    free = (np.abs(x[:, 0]) < RAIL_FREE_M) & (np.abs(x_next[:, 0]) < RAIL_FREE_M)
    assert free.sum() >= 200, f"only {free.sum()} transitions clear of the end stops"

    def nrmse(mask):
        return np.sqrt(np.mean(err[mask] ** 2, axis=0)) / np.sqrt(np.mean(true[mask] ** 2, axis=0))

    return nrmse(free), nrmse(np.ones(len(x), dtype=bool))


def _sac_upright(name: str, randomization: str | None = None, zero_force: bool = False) -> list[float]:
    """Per held-out episode: fraction of the last 2 s with cos(hinge) > 0.95 (zero force: the floor of the check)."""
    profile = load_profile("cartpole")
    env = make("robot_rl/CartpoleSwingup-v0", randomization=randomization)
    policy = OnnxPolicy(MODELS / name, profile, obs_names=env.unwrapped.obs_names)
    sc = policy.sidecar
    fractions = []
    for seed in range(HELD_OUT_SEED, HELD_OUT_SEED + SAC_EPISODES):
        obs, _ = env.reset(seed=seed)
        cos, done = [], False
        while not done:
            force = 0.0 * policy(obs) if zero_force else policy(obs)
            obs, _, terminated, truncated, _ = env.step(normalized_action(sc, force))
            cos.append(np.cos(env.unwrapped.get_state()[1]))
            done = terminated or truncated
        last = int(round(2.0 / profile.control_period_s))
        fractions.append(float(np.mean(np.asarray(cos[-last:]) > 0.95)))
    env.close()
    return fractions


def _go2_tracking(name: str, zero_action: bool = False) -> dict:
    """``tracking_report`` of the ONNX policy (or of standing still: the floor of the check) on reality samples."""
    from robot_rl.core.legged_obs import observation_names
    from robot_rl.train.locomotion_eval import tracking_report

    profile = load_profile("go2")
    policy = OnnxPolicy(MODELS / name, profile, obs_names=observation_names(profile.command_joints))
    center = np.asarray(policy.sidecar["action"]["center"])
    half = np.asarray(policy.sidecar["action"]["half_range"])

    def act(obs: np.ndarray) -> np.ndarray:
        targets = np.stack([policy(o) for o in obs])  # joint targets [rad], as the robot receives them
        assert np.all(targets >= np.asarray(profile.command_min) - 1e-6)
        assert np.all(targets <= np.asarray(profile.command_max) + 1e-6)
        return np.zeros_like(targets) if zero_action else (targets - center) / half

    return tracking_report(act, "robot_rl/Go2Joystick-v0", commands=((0.5, 0.0, 0.0), (0.4, 0.0, 0.5)),
                           samples=GO2_SAMPLES, seconds=GO2_SECONDS, seed=HELD_OUT_SEED)


@pytest.mark.parametrize("name", SHIPPED)
def test_loads_and_performs(name):
    if name == "arm_reach_gciql":
        rate = _arm_success(name)
        print(f"{name}: held-out success within {ARM_SUCCESS_M} m: {rate:.3f}")
        assert rate >= ARM_MIN_SUCCESS, f"{name}: success {rate} < {ARM_MIN_SUCCESS} on {ARM_GOALS} held-out goals"
    elif name == "cartpole_pets_dynamics":
        free, everything = _pets_nrmse(name)
        print(f"{name}: one-step normalized RMSE per state dim {np.round(free, 4)} clear of the end stops, "
              f"{np.round(everything, 4)} with end-stop contacts (zero-delta baseline 1.0)")
        assert np.all(free < PETS_MAX_NRMSE), f"{name}: one-step nrmse {free} not all < {PETS_MAX_NRMSE}"
        assert np.all(everything < 1.0), f"{name}: no better than predicting no change: {everything}"
    elif name == "cartpole_swingup_sac":
        trained_on = load_sidecar(name)["training"]["config"]["env"]["randomization"]
        for randomization in (None, trained_on):  # nominal sim, and the training's domain randomization
            fractions = _sac_upright(name, randomization)
            print(f"{name}: upright fraction of the last 2 s per episode ({randomization or 'nominal'}): {fractions}")
            assert min(fractions) >= 0.9, f"{name}: pole not held up ({randomization or 'nominal'}): {fractions}"
    elif name == "go2_joystick_ppo":
        rep = _go2_tracking(name)
        print(f"{name}: {rep['rows']}")
        walk, turn = rep["rows"]
        assert walk["vx_mae"] <= GO2_MAX_VX_MAE, f"{name}: forward 0.5 m/s tracked to {walk['vx_mae']:.3f} m/s"
        assert turn["yaw_rate_mae"] <= GO2_MAX_YAW_MAE, f"{name}: turning tracked to {turn['yaw_rate_mae']:.3f}"
        assert min(walk["height_mean"], turn["height_mean"]) >= GO2_MIN_HEIGHT, f"{name}: walks crouched {rep['rows']}"
        assert rep["falls"] <= GO2_MAX_FALLS, f"{name}: {rep['falls']} falls in {rep['episodes']} episodes"
    elif name in PANDA_MIN_HELD:
        r = _panda_reach(name)
        print(f"{name}: {PANDA_GOALS} held-out goals under reality samples: reached within 2 cm {r['reached']:.2f} "
              f"(closest p50 {np.median(r['closest']):.4f} m), held the last {PANDA_HOLD_S} s {r['held']:.2f}, "
              f"final distance p50 {np.median(r['final']):.4f} m")
        assert r["reached"] >= PANDA_MIN_REACHED, f"{name}: reached {r['reached']}: closest {r['closest']}"
        assert r["held"] >= PANDA_MIN_HELD[name], f"{name}: held {r['held']}: final distances {r['final']}"
    else:
        pytest.fail(f"no performance check for {name}")


@pytest.mark.parametrize("name", [n for n in SHIPPED if n != "cartpole_pets_dynamics"])
def test_performance_bar_rejects_doing_nothing(name):
    """The performance checks can fail: a zero command (the policy's output replaced by 0) is far below each bar.
    (For the dynamics model the bar's baseline, predicting no change, scores 1.0 by construction.)"""
    if name == "arm_reach_gciql":
        rate = _arm_success(name, zero_torque=True)
        assert rate < ARM_MIN_SUCCESS / 2, f"zero torque reaches {rate} of the goals: the arm check does not measure"
    elif name in PANDA_MIN_HELD:
        r = _panda_reach(name, zero_action=True)
        assert r["reached"] < PANDA_MIN_REACHED / 2 and r["held"] < PANDA_MIN_HELD[name] / 2, \
            f"holding the start pose: {r}"
    elif name == "go2_joystick_ppo":
        walk = _go2_tracking(name, zero_action=True)["rows"][0]
        assert walk["vx_mae"] > 2 * GO2_MAX_VX_MAE, f"standing still tracks 0.5 m/s to {walk['vx_mae']}"
    else:
        fractions = _sac_upright(name, zero_force=True)
        assert max(fractions) < 0.9, f"zero force keeps the pole up {fractions}: the cart-pole check does not measure"
