"""Running mean / standard deviation observation normalizer, as a torch module.

Being a module with buffers, it is saved in state dicts and exported inside the policy graph (ONNX), so the robot
applies exactly the training-time normalization. Statistics are updated explicitly with ``update`` (never in
``forward``), so evaluation and export never move them.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class RunningNormalizer(nn.Module):
    """``y = clip((x - mean) / sqrt(var + eps), -clip, clip)`` with mean/var from all data seen by ``update``.

    Shapes: ``forward`` maps ``[..., n]`` to ``[..., n]``; buffers ``mean``, ``var`` are ``[n]`` float64 (summing
    millions of float32 samples drifts), ``count`` a float64 scalar. Parallel-variance merge of Chan et al. (1979).
    """

    def __init__(self, n: int, *, eps: float = 1e-8, clip: float = 10.0):
        super().__init__()
        self.n = int(n)
        self.eps = float(eps)
        self.clip = float(clip)
        self.register_buffer("mean", torch.zeros(n, dtype=torch.float64))
        self.register_buffer("var", torch.ones(n, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        # float32 copies used in forward; refreshed by update()/load_state_dict so forward does no conversions
        self.register_buffer("mean_f32", torch.zeros(n), persistent=False)
        self.register_buffer("inv_std_f32", torch.ones(n), persistent=False)

    @torch.no_grad()
    def update(self, x: torch.Tensor | np.ndarray) -> None:
        """Fold a batch ``[B, n]`` (or ``[n]``) of raw observations into the statistics.

        Computed in numpy float64 on views of the buffers (a rollout calls this once per env step; a dozen torch
        ops on ``[n]``-sized tensors cost several times more in dispatch than the arithmetic).
        """
        x = x.detach().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        x = x.reshape(-1, self.n).astype(np.float64)
        batch_count = x.shape[0]
        if batch_count == 0:
            return
        mean, var = self.mean.numpy(), self.var.numpy()
        count = float(self.count)
        batch_mean = x.mean(0)
        batch_var = x.var(0)
        total = count + batch_count
        delta = batch_mean - mean
        m2 = var * count + batch_var * batch_count + np.square(delta) * (count * batch_count / total)
        mean += delta * (batch_count / total)
        np.divide(m2, total, out=var)
        self.count.fill_(total)
        self._refresh()

    def _refresh(self) -> None:
        self.mean_f32.numpy()[:] = self.mean.numpy()
        self.inv_std_f32.numpy()[:] = 1.0 / np.sqrt(self.var.numpy() + self.eps)

    def _load_from_state_dict(self, *args, **kwargs):  # keep the float32 copies in sync after loading
        super()._load_from_state_dict(*args, **kwargs)
        with torch.no_grad():
            self._refresh()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp((x - self.mean_f32) * self.inv_std_f32, -self.clip, self.clip)


def make_normalizer(n: int, enabled: bool, fit: np.ndarray | None = None) -> nn.Module:
    """A ``RunningNormalizer(n)`` (fitted on ``fit`` ``[B, n]`` when given) if ``enabled``, else ``nn.Identity``."""
    if not enabled:
        return nn.Identity()
    normalizer = RunningNormalizer(n)
    if fit is not None:
        normalizer.update(fit)
    return normalizer
