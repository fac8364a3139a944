"""Fine-tuning (``train.init_from``): a run starts from another run's networks, normalizer, optimizer state (and SAC's
replay), with its own counters and randomization; a checkpoint that does not fit is refused naming the key."""

import pytest
import torch
from train_tiny_configs import PPO_TINY, SAC_TINY, tiny

from robot_rl.core.config import ConfigError, config_hash
from robot_rl.train.checkpoint import CheckpointError, load_checkpoint
from robot_rl.train.runner import train


def test_sac_starts_from_the_checkpoints_weights_and_replay_with_its_own_counters(tmp_path):
    src = train(tiny(SAC_TINY), tmp_path / "src")
    ckpt = tmp_path / "src" / "checkpoints" / "latest.pt"
    before = load_checkpoint(ckpt)["learner"]
    # 200 steps, all before learning_starts: no update, so the weights are still the source's at the end
    cfg = tiny(SAC_TINY, f"train.init_from={ckpt}", "train.total_steps=200", "train.checkpoint_every_steps=200",
               "train.eval_every_steps=0", "sac.learning_starts=300", "env.randomization=wide_latency")
    run = train(cfg, tmp_path / "ft")
    assert run["status"] == "complete" and run["env_steps"] == 200 and run["init_from"] == str(ckpt)
    after = load_checkpoint(tmp_path / "ft" / "checkpoints" / "latest.pt")["learner"]
    assert torch.equal(after["flat"], before["flat"]) and torch.equal(after["target_flat"], before["target_flat"])
    assert after["env_steps"] == 200 and after["n_updates"] == 0 and src["env_steps"] == 600
    assert after["replay"]["size"] == before["replay"]["size"] + 200  # the source's transitions, then its own
    # a from-scratch run of the same config has other weights
    scratch = tiny(SAC_TINY, "train.total_steps=200", "train.checkpoint_every_steps=200", "train.eval_every_steps=0",
                   "sac.learning_starts=300")
    train(scratch, tmp_path / "scratch")
    fresh = load_checkpoint(tmp_path / "scratch" / "checkpoints" / "latest.pt")["learner"]
    assert not torch.equal(fresh["flat"], before["flat"])
    # the key leaves every existing config's hash alone while it is null
    assert config_hash(tiny(SAC_TINY)) == config_hash(tiny(SAC_TINY, "train.init_from=null"))


def test_ppo_starts_from_the_checkpoint(tmp_path):
    train(tiny(PPO_TINY), tmp_path / "src")
    ckpt = tmp_path / "src" / "checkpoints" / "latest.pt"
    run = train(tiny(PPO_TINY, f"train.init_from={ckpt}", "train.total_steps=128", "train.eval_every_steps=0",
                     "train.checkpoint_every_steps=128"), tmp_path / "ft")
    assert run["status"] == "complete" and run["env_steps"] == 128


def test_a_checkpoint_that_does_not_fit_is_refused(tmp_path):
    train(tiny(SAC_TINY, "train.total_steps=300"), tmp_path / "src")
    ckpt = tmp_path / "src" / "checkpoints"
    with pytest.raises(CheckpointError, match="not a training checkpoint"):
        train(tiny(SAC_TINY, f"train.init_from={ckpt / 'best.pt'}"), tmp_path / "a")
    with pytest.raises(ConfigError, match="does not fit"):
        train(tiny(SAC_TINY, f"train.init_from={ckpt / 'latest.pt'}", "sac.actor_hidden=[16, 16]"), tmp_path / "b")
    with pytest.raises(ConfigError, match="was trained with 'sac'"):
        train(tiny(PPO_TINY, f"train.init_from={ckpt / 'latest.pt'}"), tmp_path / "c")
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()  # refused before the run directory
