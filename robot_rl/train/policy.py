"""``load_policy``: the deployable deterministic policy from a run directory or a checkpoint file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from robot_rl.nets import HierarchicalPolicyModule, PolicyModule, make_normalizer, mlp
from robot_rl.train.checkpoint import CheckpointError, load_checkpoint


@dataclass(frozen=True)
class LoadedPolicy:
    """A trained policy and where it came from.

    ``module``: raw float32 obs ``[B, n_obs]`` -> deterministic action ``[B, n_act]`` in [-1, 1], normalization
    inside, eval mode, no gradients. For goal-conditioned envs the input is ``concat(observation, desired_goal)``.
    """

    module: nn.Module
    env_id: str
    algo: str
    config: dict[str, Any]
    config_hash: str
    metrics: dict[str, Any]
    obs_names: list[str]
    checkpoint: Path


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file as given, or for a run directory ``checkpoints/best.pt`` (else ``checkpoints/latest.pt``)."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "latest.pt"):
            if (path / "checkpoints" / name).is_file():
                return path / "checkpoints" / name
        raise CheckpointError(f"run directory {path} has no checkpoints/best.pt or checkpoints/latest.pt")
    if not path.exists():
        raise CheckpointError(f"{path} is neither a run directory nor a checkpoint file")
    return path


def build_policy(spec: dict[str, Any]) -> nn.Module:
    """Rebuild the policy from the ``policy`` entry of a checkpoint: a ``PolicyModule`` (``SacLearner.policy_spec``),
    or with ``kind: hierarchical`` a ``HierarchicalPolicyModule`` (``HiqlLearner.policy_spec``).
    """
    n_obs, n_act = int(spec["n_obs"]), int(spec["n_act"])
    normalizer = make_normalizer(n_obs, spec["normalize_obs"])
    hidden = [int(h) for h in spec["hidden"]]
    if spec.get("kind", "flat") == "hierarchical":
        n_state, rep_dim = int(spec["n_state"]), int(spec["rep_dim"])
        module = HierarchicalPolicyModule(normalizer, mlp(n_obs, rep_dim, hidden, spec["activation"]),
                                          mlp(n_state + rep_dim, n_act, hidden, spec["activation"]), n_state, n_act)
    else:
        module = PolicyModule(normalizer, mlp(n_obs, int(spec["n_out"]), hidden, spec["activation"]), n_act,
                              spec["squash"])
    module.load_state_dict(spec["state_dict"])
    module.eval()
    module.requires_grad_(False)
    return module


def load_policy(run_dir_or_checkpoint: str | Path) -> LoadedPolicy:
    """Load the deterministic policy of a run (best evaluation, else latest) or of a given checkpoint file."""
    path = resolve_checkpoint(run_dir_or_checkpoint)
    payload = load_checkpoint(path)
    try:
        meta = payload["meta"]
        module = build_policy(payload["policy"])
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path} has no usable policy: {type(exc).__name__}: {exc}") from None
    return LoadedPolicy(module=module, env_id=meta["env_id"], algo=meta["algo"], config=meta["config"],
                        config_hash=meta["config_hash"], metrics=dict(meta.get("metrics", {})),
                        obs_names=list(meta["obs_names"]), checkpoint=path)
