"""Tiny experiment configs shared by the training tests (seconds on 2 cores)."""

from robot_rl.train.config import load_experiment

SAC_TINY = {
    "algo": "sac", "seed": 0,
    "env": {"id": "robot_rl/PendulumSwingup-v0", "randomization": "default"},
    "train": {"total_steps": 600, "log_every_steps": 100, "eval_every_steps": 300, "eval_episodes": 1,
              "checkpoint_every_steps": 300, "progress": False},
    "sac": {"batch_size": 32, "learning_starts": 100, "actor_hidden": [32, 32], "critic_hidden": [32, 32],
            "buffer_size": 10000, "normalize_obs": True},  # the non-default path, exported inside the policy
}

SAC_HER_TINY = {  # hindsight relabeling on a goal task (episodes of 100 steps: segments cut one at 250)
    "algo": "sac", "seed": 0,
    "env": {"id": "robot_rl/PandaReach-v0", "randomization": "default"},
    "train": {"total_steps": 500, "log_every_steps": 100, "eval_every_steps": 250, "eval_episodes": 1,
              "checkpoint_every_steps": 250, "progress": False},
    "sac": {"batch_size": 32, "learning_starts": 100, "actor_hidden": [32, 32], "critic_hidden": [32, 32],
            "buffer_size": 10000, "her_ratio": 0.8},
}

PPO_TINY = {
    "algo": "ppo", "seed": 0,
    "env": {"id": "robot_rl/CartpoleBalance-v0", "randomization": "default"},
    "train": {"total_steps": 1024, "log_every_steps": 128, "eval_every_steps": 512, "eval_episodes": 1,
              "checkpoint_every_steps": 512, "progress": False},
    "ppo": {"num_envs": 4, "n_steps": 32, "n_epochs": 2, "n_minibatches": 2, "actor_hidden": [16],
            "critic_hidden": [16]},
}


def tiny(base: dict, *overrides: str):
    return load_experiment(raw=base, overrides=list(overrides))
