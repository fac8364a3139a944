"""Tiny experiment configs shared by the scale tests."""

PPO_RAW = {
    "algo": "ppo", "seed": 0,
    "env": {"id": "robot_rl/CartpoleBalance-v0", "randomization": "default"},
    "train": {"total_steps": 1024, "log_every_steps": 256, "eval_every_steps": 512, "eval_episodes": 1,
              "checkpoint_every_steps": 512, "progress": False},
    "ppo": {"num_envs": 4, "n_steps": 32, "n_epochs": 2, "n_minibatches": 2, "actor_hidden": [16],
            "critic_hidden": [16]},
}
