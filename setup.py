"""Packaging for pip (``pip install -e .``) and ROS 2 colcon (ament_python)."""

import os
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "robot_rl"
ASSET_DIRS = ("launch", "hardware", "sim", "config", "models")


def data_files():
    """Install launch/, hardware/, sim/, config/, models/ under share/robot_rl, keeping the tree."""
    files = [
        ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE]),
        ("share/" + PACKAGE, ["package.xml"]),
    ]
    for top in ASSET_DIRS:
        for path in sorted(glob(os.path.join(top, "**", "*"), recursive=True)):
            if os.path.isfile(path) and "__pycache__" not in path:
                files.append((os.path.join("share", PACKAGE, os.path.dirname(path)), [path]))
    return files


NODES = {
    # ROS 2 executables (``ros2 run robot_rl <name>``); installed under lib/robot_rl by colcon.
    "sim_robot": "robot_rl.nodes.sim_robot:main",
    "policy_node": "robot_rl.nodes.policy_node:main",
    "mpc_node": "robot_rl.nodes.mpc_node:main",
    "recorder": "robot_rl.nodes.recorder:main",
    "cmd_vel_source": "robot_rl.nodes.cmd_vel_source:main",
}

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, PACKAGE + ".*"]),
    data_files=data_files(),
    install_requires=["setuptools"],
    extras_require={"scale": ["ray[tune]==2.60.0"],  # distributed rollouts and sweeps (requirements-scale.txt)
                    "jit": ["numba==0.68.1"]},  # compiled iLQR backward pass (robot_rl/control/ilqr_jit.py)
    zip_safe=False,
    maintainer="robot_rl team",
    maintainer_email="robot-rl@example.invalid",
    description="Sim-to-real control stack: MuJoCo, RL and MPC, ONNX export, ROS 2 deployment, rosbag2 replay.",
    license="Apache-2.0",
    python_requires=">=3.10",
    entry_points={
        "console_scripts": ["robot-rl = robot_rl.cli:main"]
        + [f"{name} = {target}" for name, target in NODES.items()],
    },
)
