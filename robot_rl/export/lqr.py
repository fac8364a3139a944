"""The LQR balance controller of ``robot_rl.deploy.lqr_policy`` as a policy artifact (build time: torch).

The deployable baseline the ROS tests and the latency benchmark run: the same ``policy.onnx`` + ``policy.json``
contract as a trained policy, made by the same ``export_policy`` checks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from robot_rl.deploy.lqr_policy import lqr_gain, observation_gain
from robot_rl.envs import make
from robot_rl.export.onnx import export_policy


def write_lqr_artifact(out_dir, profile, env_id: str, *, n_parity: int = 1000, seed: int = 0):
    """Export the saturating LQR law ``clip(W obs)`` for ``env_id``'s observation as a policy artifact.

    Goes through ``robot_rl.export.onnx.export_policy`` (torch; build-time only) like a trained policy: a linear
    layer giving the normalized action ``W obs / half_range - center / half_range``, parity-checked on
    ``n_parity`` observations of LQR-controlled episodes of the env. Returns the artifact directory.
    """
    env = make(env_id, seed=seed)
    builder = env.unwrapped.observation_builder
    K, _ = lqr_gain(profile)
    W = observation_gain(K, profile, builder.terms)
    lo, hi = np.asarray(profile.command_min), np.asarray(profile.command_max)
    center, half = (hi + lo) / 2.0, (hi - lo) / 2.0
    layer = torch.nn.Linear(W.shape[1], W.shape[0])
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(W / half[:, None], dtype=torch.float32))
        layer.bias.copy_(torch.as_tensor(-center / half, dtype=torch.float32))
    obs_list = []
    obs, _ = env.reset(seed=seed)
    while len(obs_list) < n_parity:
        obs_list.append(obs)
        obs, _, term, trunc, _ = env.step(np.clip((W @ obs - center) / half, -1.0, 1.0))
        if term or trunc:
            obs, _ = env.reset()
    out = Path(out_dir)
    export_policy(layer, out, profile=profile, obs_names=builder.names, obs_units=builder.units,
                  parity_obs=np.asarray(obs_list), env_id=env_id, algo="lqr", name=out.name,
                  parity_source=f"{n_parity} observations of LQR-controlled {env_id} episodes (seed {seed})",
                  extra={"K": K.tolist(), "W": W.tolist()})
    return out
