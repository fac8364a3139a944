"""robot_rl.nets: small torch building blocks shared by the learners.

``mlp`` (plain MLP), ``RunningNormalizer`` (observation mean/std as a module, so it exports inside a policy graph;
``make_normalizer`` builds one or an identity),
Gaussian and tanh-Gaussian densities (``gaussian_log_prob``, ``tanh_gaussian_sample``), flat parameter vectors
with ``torch.optim.Adam`` over them (``pack_parameters``, ``flat_adam``) and ``EnsembleLinear`` / ``EnsembleMLP``
(E independent networks evaluated as one batched matmul per layer: SAC's twin critics, PETS' dynamics ensemble).
"""

from robot_rl.nets.distributions import gaussian_log_prob, tanh_gaussian_deterministic, tanh_gaussian_sample
from robot_rl.nets.ensemble import EnsembleLinear, EnsembleMLP
from robot_rl.nets.mlp import HierarchicalPolicyModule, PolicyModule, activation_class, length_normalize, mlp
from robot_rl.nets.normalizer import RunningNormalizer, make_normalizer
from robot_rl.nets.optim import flat_adam, load_adam_state, pack_parameters

__all__ = [
    "EnsembleLinear",
    "EnsembleMLP",
    "HierarchicalPolicyModule",
    "PolicyModule",
    "RunningNormalizer",
    "activation_class",
    "flat_adam",
    "gaussian_log_prob",
    "length_normalize",
    "load_adam_state",
    "make_normalizer",
    "mlp",
    "pack_parameters",
    "tanh_gaussian_deterministic",
    "tanh_gaussian_sample",
]
