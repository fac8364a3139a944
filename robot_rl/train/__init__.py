"""robot_rl.train: run directories, checkpoints, logging, evaluation and the training loop.

``train(cfg, run_dir)`` runs an experiment (``robot_rl.train.runner``); ``load_policy(run_dir_or_checkpoint)`` returns
the deployable deterministic policy (``robot_rl.train.policy``). See docs/training.md.
"""

from robot_rl.train.checkpoint import CheckpointError, load_checkpoint, save_atomic
from robot_rl.train.policy import LoadedPolicy, load_policy

__all__ = ["CheckpointError", "LoadedPolicy", "load_checkpoint", "load_policy", "save_atomic", "train"]


def train(*args, **kwargs):
    """See ``robot_rl.train.runner.train`` (imported lazily: it pulls in the env stack)."""
    from robot_rl.train.runner import train as _train

    return _train(*args, **kwargs)
