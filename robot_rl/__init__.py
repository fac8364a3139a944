"""robot_rl: a sim-to-real control stack (MuJoCo -> learning/planning -> ONNX -> ROS 2 -> logged data)."""

import os as _os

__version__ = "0.1.0"


def _pick_headless_gl() -> None:
    """Choose MuJoCo's headless GL backend before mujoco is imported (it reads MUJOCO_GL once, at import).

    Only a backend whose library is present is chosen: MUJOCO_GL=osmesa without libOSMesa would make
    ``import mujoco`` itself fail. Users override with MUJOCO_GL=egl|osmesa|glfw.
    """
    if "MUJOCO_GL" in _os.environ or _os.environ.get("DISPLAY"):
        return
    import ctypes.util

    if _os.path.exists("/dev/nvidia0") and ctypes.util.find_library("EGL"):
        _os.environ["MUJOCO_GL"] = "egl"
        _os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    elif ctypes.util.find_library("OSMesa"):
        _os.environ["MUJOCO_GL"] = "osmesa"
        _os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")


_pick_headless_gl()
