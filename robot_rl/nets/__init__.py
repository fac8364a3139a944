"""robot_rl.nets: small torch building blocks shared by the learners.

``mlp`` (plain MLP), ``RunningNormalizer`` (observation mean/std as a module, so it exports inside a policy graph),
``TanhGaussian`` helpers (squashed Gaussian policy head) and ``EnsembleLinear`` / ``EnsembleMLP`` (E independent
networks evaluated as one batched matmul per layer: SAC's twin critics, PETS' dynamics ensemble).
"""

from robot_rl.nets.distributions import tanh_gaussian_deterministic, tanh_gaussian_sample
from robot_rl.nets.ensemble import EnsembleLinear, EnsembleMLP
from robot_rl.nets.mlp import PolicyModule, activation_class, mlp
from robot_rl.nets.normalizer import RunningNormalizer

__all__ = [
    "EnsembleLinear",
    "EnsembleMLP",
    "PolicyModule",
    "RunningNormalizer",
    "activation_class",
    "mlp",
    "tanh_gaussian_deterministic",
    "tanh_gaussian_sample",
]
