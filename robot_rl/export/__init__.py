"""robot_rl.export: policies and dynamics ensembles as ONNX artifacts with a sidecar (docs/export.md).

``robot_rl.export.onnx`` (torch, build time): ``export_policy`` / ``export_ensemble`` with checks.
``robot_rl.export.runtime`` (onnxruntime + numpy, robot side): ``OnnxPolicy`` / ``OnnxEnsemble`` refuse any artifact
that does not match the robot profile. ``robot_rl.export.lqr`` (torch, build time): the LQR baseline as a policy
artifact. This package imports none of them on its own.
"""
