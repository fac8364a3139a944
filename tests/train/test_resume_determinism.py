"""Exact resume on CPU, and seed determinism, for SAC and PPO (tiny budgets)."""

import csv
import math

import pytest
from train_tiny_configs import PPO_TINY, SAC_HER_TINY, SAC_TINY, tiny

from robot_rl.train.runner import train

TIMING = {"time_s", "sps"}


def rows(path, skip=TIMING):
    with open(path, newline="") as f:
        return [{k: v for k, v in r.items() if k not in skip} for r in csv.DictReader(f)]


@pytest.mark.parametrize("base", [SAC_TINY, SAC_HER_TINY, PPO_TINY], ids=["sac", "sac-her", "ppo"])
def test_resume_reproduces_uninterrupted_run(tmp_path, base):
    cfg = tiny(base)
    half = cfg.train.checkpoint_every_steps
    full = train(cfg, tmp_path / "a")
    assert full["status"] == "complete"
    # run B: interrupted after the checkpoint at `half` and a few more logged steps (which resume must discard)
    part = train(cfg, tmp_path / "b", stop_after_steps=half + cfg.train.log_every_steps)
    assert part["status"] == "interrupted"
    assert float(rows(tmp_path / "b" / "metrics.csv")[-1]["step"]) > half
    resumed = train(cfg, tmp_path / "b", resume=True)
    assert resumed["status"] == "complete"
    a, b = rows(tmp_path / "a" / "metrics.csv"), rows(tmp_path / "b" / "metrics.csv")
    assert [r["step"] for r in a] == [r["step"] for r in b]
    after = [i for i, r in enumerate(a) if float(r["step"]) > half]
    assert after, "no metrics after the checkpoint"
    for i in after:
        assert a[i] == b[i], f"row {i} differs after resume:\n{a[i]}\n{b[i]}"
    assert rows(tmp_path / "a" / "eval.csv") == rows(tmp_path / "b" / "eval.csv")


@pytest.mark.parametrize("base", [SAC_TINY, PPO_TINY], ids=["sac", "ppo"])
def test_same_seed_same_curve_different_seed_differs(tmp_path, base):
    short = ["train.total_steps=300", "train.eval_every_steps=0"] if base is SAC_TINY else [
        "train.total_steps=512", "train.eval_every_steps=0"]
    train(tiny(base, *short), tmp_path / "s0")
    train(tiny(base, *short), tmp_path / "s0b")
    train(tiny(base, *short, "seed=1"), tmp_path / "s1")
    r0, r0b, r1 = (rows(tmp_path / d / "metrics.csv") for d in ("s0", "s0b", "s1"))
    assert r0 == r0b
    key = "critic_loss" if base is SAC_TINY else "policy_loss"
    v0 = [float(r[key]) for r in r0 if not math.isnan(float(r[key]))]
    v1 = [float(r[key]) for r in r1 if not math.isnan(float(r[key]))]
    assert v0 and v0 != v1
    assert [r["train_return"] for r in r0] != [r["train_return"] for r in r1]


def test_hindsight_relabeling_needs_a_goal_task(tmp_path):
    with pytest.raises(ValueError, match=r"her_ratio 0.8: env .robot_rl/PendulumSwingup-v0. is not goal-conditioned"):
        train(tiny(SAC_TINY, "sac.her_ratio=0.8"), tmp_path / "x")
    with pytest.raises(ValueError, match=r"sac.her_ratio must be in \[0, 1\]"):
        tiny(SAC_TINY, "sac.her_ratio=1.5")
