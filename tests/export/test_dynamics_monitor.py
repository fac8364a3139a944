"""The dynamics monitor (robot_rl.export.monitor) with the shipped cart-pole policy and its monitor, on sim_robot's
plant: quiet in distribution, an alarm well before the failure far outside it, and the policy loop's reaction.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from robot_rl.core.profile import load_profile
from robot_rl.export.monitor import MONITOR_FILE, DynamicsMonitor
from robot_rl.export.runtime import ArtifactError, OnnxPolicy
from robot_rl.train.monitor_fit import plant_episode

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "cartpole_swingup_sac"
MONITOR = MODEL / "monitor"
ENV = "robot_rl/CartpoleSwingupRail-v0"
LATENCY_5 = str(REPO / "bench" / "randomization" / "ood_latency_5.yaml")
DAMPING = str(REPO / "bench" / "randomization" / "ood_joint_damping.yaml")


@pytest.fixture(scope="module")
def setup():
    profile = load_profile("cartpole")
    return profile, OnnxPolicy.load(MODEL, profile)


def test_quiet_in_distribution(setup):
    profile, policy = setup
    for seed in (700_000_000, 700_000_001):  # never used for the monitor's training or calibration
        mon = DynamicsMonitor(MONITOR, profile)
        ep = plant_episode(policy, ENV, "default", seed, monitor=mon)
        assert mon.alarms == 0 and mon.peak < mon.threshold
        # in distribution the windowed surprise sits at ~2 (the largest of four squared z-scores: 2.5 on average for
        # N(0, 1) errors)
        assert np.nanmedian(ep["score"]) < 3.0
        assert ep["reward"].sum() > 380


def test_alarm_before_the_failure_far_outside(setup):
    """5-6 periods of latency (training: 0-2): the swing-up fails; the alarm comes seconds before the 5 s mark."""
    profile, policy = setup
    mon = DynamicsMonitor(MONITOR, profile)
    ep = plant_episode(policy, ENV, LATENCY_5, 0, monitor=mon)
    hinge = ep["q_true"][:, 1]
    up = np.abs(np.arctan2(np.sin(hinge), np.cos(hinge))) < 0.8
    assert up[:250].sum() < 100  # it does not swing up in 5 s (250 periods)
    first = int(np.argmax(ep["score"] > mon.threshold))
    assert mon.alarms > 0 and first < 200, first


def test_transitions_across_a_gap_are_skipped(setup):
    profile, _ = setup
    mon = DynamicsMonitor(MONITOR, profile)
    q, qd, u = np.array([0.0, np.pi]), np.zeros(2), np.zeros(1)
    mon.update(q, qd, 0.0, u)
    mon.update(q, qd, 0.04, u)  # two periods later: not a one-period transition
    assert np.isnan(mon.last)
    mon.update(q, qd, 0.06, u)
    assert np.isfinite(mon.last)
    mon.update(np.array([np.nan, 0.0]), qd, 0.08, u)  # non-finite: history dropped
    mon.update(q, qd, 0.10, u)
    assert np.isnan(mon.last)


def test_refuses_a_monitor_for_another_robot_layout(setup, tmp_path):
    profile, _ = setup
    bad = tmp_path / "m"
    shutil.copytree(MONITOR, bad)
    cfg = json.loads((bad / MONITOR_FILE).read_text())
    del cfg["threshold"]
    (bad / MONITOR_FILE).write_text(json.dumps(cfg))
    with pytest.raises(ArtifactError, match="threshold"):
        DynamicsMonitor(bad, profile)
    with pytest.raises(ArtifactError):
        DynamicsMonitor(MONITOR, load_profile("pendulum"))


def _damped_loop(profile, policy, action: str, fallback=None):
    """300 control steps of the node's loop with the monitor on sim_robot's plant, joint damping +0.1-0.2 (the
    swing-up fails); ``fallback(step) -> command or None`` feeds the fallback controller's topic. Returns (loop,
    modes, commands, the safety filter's last status message).
    """
    from robot_rl.deploy.policy_loop import PolicyLoop
    from robot_rl.deploy.sim_plant import EnvReality, SimPlant
    from robot_rl.envs import make
    from robot_rl.safety import SafetyFilter

    env = make(ENV, randomization=DAMPING, seed=0)
    base = env.unwrapped
    reality = EnvReality(env, base.np_random)
    plant = SimPlant(profile, base.model, base.data, reality=reality, rng=np.random.default_rng(0))
    plant.latency_s += reality.action_latency_s
    safety = SafetyFilter(profile)
    loop = PolicyLoop(safety, base.observation_builder, policy, control_period_s=0.02,
                      monitor=DynamicsMonitor(MONITOR, profile), monitor_action=action, fallback_timeout_s=0.06)
    t, modes, commands, message = 0.0, [], [], ""
    for i in range(300):
        q, qd, eff = plant.measure()
        loop.on_joint_state(list(profile.joint_names), q, qd, eff, stamp_s=t, now_s=t, clock_s=t)
        f = fallback(i) if fallback is not None else None
        if f is not None:
            assert loop.set_fallback_command(f, t)
        cmd, status, _ = loop.step(t)
        modes.append(status.mode)
        commands.append(cmd.copy())
        message = status.message
        plant.on_command(cmd, t)
        plant.advance(t + 0.02 - 1e-9)
        t += 0.02
    env.close()
    return loop, modes, np.array(commands), message


def test_policy_loop_latches_the_estop_on_the_alarm(setup):
    """The node's control step with the monitor: on the alarm the e-stop latches and the safe command goes out."""
    from robot_rl.deploy.policy_loop import PolicyLoop
    from robot_rl.envs import make
    from robot_rl.safety import SafetyFilter

    profile, policy = setup
    loop, modes, cmds, _ = _damped_loop(profile, policy, "estop")
    assert "dynamics monitor" in loop.monitor_alarm and modes[-1] == "estop" and np.all(cmds[-1] == 0.0)
    first = modes.index("estop")
    assert first < 200 and all(m == "estop" for m in modes[first:])
    loop, modes, _, _ = _damped_loop(profile, policy, "warn")
    assert "dynamics monitor" in loop.monitor_alarm and "estop" not in modes
    with pytest.raises(ValueError, match="monitor_action"):
        PolicyLoop(SafetyFilter(profile), make(ENV).unwrapped.observation_builder, policy, control_period_s=0.02,
                   monitor_action="ignore")


def test_policy_loop_hands_over_to_the_fallback_then_stops_when_it_falls_silent(setup):
    """monitor_action fallback: after the alarm the commands are the fallback controller's (through the safety
    filter), and a fallback silent for longer than its timeout latches
    the e-stop; refused fallback commands are counted and not used."""
    profile, policy = setup
    target = 3.0  # N, inside the cart's +-10 N
    loop, modes, cmds, message = _damped_loop(profile, policy, "fallback",
                                              fallback=lambda i: [target] if i < 250 else None)
    assert loop.fallback_active and "dynamics monitor" in loop.monitor_alarm
    on = int(np.argmax([np.allclose(c, target) for c in cmds]))  # the fallback's command reached
    assert 0 < on < 250 and np.allclose(cmds[on:250], target), cmds[on - 5:on + 5]
    assert modes[:253].count("estop") == 0 and modes[-1] == "estop"
    assert "fallback controller silent" in message and np.all(cmds[-1] == 0.0)
    assert loop.fallback_commands == 250
    assert not loop.set_fallback_command([np.nan], 0.0) and not loop.set_fallback_command([1.0, 2.0], 0.0)
    assert loop.fallback_rejected == 2
    # no fallback controller at all: the hand-over finds nothing and latches the e-stop at the next step
    loop, modes, _, message = _damped_loop(profile, policy, "fallback")
    first = modes.index("estop")
    assert first < 200 and "no command received" in message
