"""robot_rl.export: policies and dynamics ensembles as ONNX artifacts with a sidecar (docs/export.md).

``robot_rl.export.onnx`` (torch, build time): ``export_policy`` / ``export_ensemble`` with checks.
``robot_rl.export.runtime`` (onnxruntime + numpy, robot side): ``OnnxPolicy`` / ``OnnxEnsemble`` refuse any artifact
that does not match the robot profile. This package imports neither on its own.
"""
