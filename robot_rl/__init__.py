"""robot_rl: a sim-to-real control stack (MuJoCo -> learning/planning -> ONNX -> ROS 2 -> logged data)."""

__version__ = "0.1.0"
