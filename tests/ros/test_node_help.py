"""Every node executable answers ``--help`` / ``-h`` with its parameters (type, default, accepted values,
description) and exits 0 without starting ROS: no rclpy.init (which opens a log file in ROS_LOG_DIR), no topics,
no bag or directory in the working directory."""

from __future__ import annotations

import ast
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NODES = sorted(p.stem for p in (REPO / "robot_rl" / "nodes").glob("*.py") if not p.stem.startswith("_"))
# Names each node is known to take (launch files, docs/nodes.md); the catalog check below covers the rest.
KNOWN = {
    "sim_robot": {"robot", "env_id", "randomization", "seed", "sensor_period_s", "command_timeout_s", "latency_s",
                  "initial_positions", "hold_until_first_command", "publish_clock"},
    "policy_node": {"robot", "model", "env_id", "control_period_s", "trigger", "state_dir", "goal",
                    "allow_fault_injection", "cmd_vel_timeout_s", "monitor", "monitor_action", "fallback_commands",
                    "fallback_timeout_s", "commands_topic"},
    "mpc_node": {"config", "robot", "cost", "planner", "mpc.horizon", "mpc.replan_budget_s", "ilqr.max_iterations",
                 "sampling.num_samples", "trigger", "state_dir", "allow_fault_injection", "commands_topic",
                 "wait_for_plan"},
    "recorder": {"robot", "output", "extra_topics"},
    "cmd_vel_source": {"robot", "linear_x", "linear_y", "angular_z", "period_s", "start_after_s", "duration_s",
                       "sequence"},
}
COMMON = {"executor", "realtime_priority"}


def run_help(node: str, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "ROS_LOG_DIR": str(cwd / "ros_log"), "ROS_HOME": str(cwd / "ros"),
           "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    work = cwd / "work"
    work.mkdir()
    res = subprocess.run([sys.executable, "-m", f"robot_rl.nodes.{node}", *args], cwd=work, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert list(work.iterdir()) == [], "the help run wrote into the working directory"
    assert not (cwd / "ros_log").exists() and not (cwd / "ros").exists(), "the help run started ROS"
    return res


def declarations(node: str):
    """The function that declares the parameters of ``node`` (what its ``main`` hands to ``run_node``)."""
    mod = importlib.import_module(f"robot_rl.nodes.{node}")
    cls = {"policy_node": "PolicyNode", "mpc_node": "MpcNode"}.get(node)
    return getattr(mod, cls).node_parameters if cls else mod.node_parameters


def listed(text: str) -> dict[str, str]:
    """``{parameter name: its line}`` from the help's parameter list."""
    lines = text.split("parameters (", 1)[1].splitlines()[1:]
    return {ln.split()[0]: ln.strip() for ln in lines if ln.startswith("  ") and not ln.startswith("   ")}


def test_rclpy_init_would_show_in_the_log_dir(tmp_path):
    """The 'no ROS started' check above is real: rclpy.init opens a log file in ROS_LOG_DIR."""
    env = {**os.environ, "ROS_LOG_DIR": str(tmp_path / "ros_log"), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    subprocess.run([sys.executable, "-c", "import rclpy; rclpy.init(); rclpy.shutdown()"], env=env, check=True,
                   timeout=60)
    assert list((tmp_path / "ros_log").iterdir())


def test_every_executable_is_covered():
    """The console scripts of setup.py: the four nodes (here) and ``robot-rl`` (argparse, checked below)."""
    tree = ast.parse((REPO / "setup.py").read_text())
    table = next(n.value for n in tree.body if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "NODES")
    assert {k: v.rpartition(":")[0] for k, v in ast.literal_eval(table).items()} == \
        {n: f"robot_rl.nodes.{n}" for n in NODES}
    assert set(NODES) == set(KNOWN)


def test_robot_rl_command_answers_help(tmp_path):
    res = subprocess.run([sys.executable, "-m", "robot_rl.cli", "--help"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert res.returncode == 0 and res.stdout.startswith("usage: robot-rl") and list(tmp_path.iterdir()) == []


def test_help_flag_only_among_the_nodes_own_arguments():
    from robot_rl.nodes._common import wants_help

    assert wants_help(["sim_robot", "-h"]) and wants_help(["sim_robot", "--help", "--ros-args", "-p", "seed:=1"])
    assert not wants_help(["recorder", "--ros-args", "-p", "output:=--help"])
    assert not wants_help(["recorder"]) and not wants_help(["recorder", "--ros-args", "-p", "output:=-h"])


@pytest.mark.parametrize("node", NODES)
def test_help_lists_every_parameter_and_starts_nothing(node, tmp_path):
    from robot_rl.nodes._common import ParameterCatalog, node_options

    res = run_help(node, tmp_path, "--help")
    out = res.stdout
    assert out.startswith(f"usage: {node} ") and "exit codes:" in out
    shown = listed(out)
    assert KNOWN[node] | COMMON <= set(shown), f"missing: {KNOWN[node] | COMMON - set(shown)}"
    # exactly what the node declares at run time: the same declaration code, on a recording reader
    catalog = ParameterCatalog()
    declarations(node)(catalog)
    node_options(catalog)
    assert list(shown) == [p.name for p in catalog.declared]
    for p in catalog.declared:
        assert f"{p.name} ({p.kind}, default " in shown[p.name]
        assert " ".join(p.description.split()[:4]) in " ".join(out.split()), p.name
    assert not res.stderr.strip(), res.stderr


def test_help_shows_types_defaults_and_choices(tmp_path):
    out = run_help("sim_robot", tmp_path, "-h").stdout
    shown = listed(out)
    assert shown["seed"] == "seed (integer, default 0; >= 0)"
    assert shown["robot"] == "robot (string, default 'cartpole')"
    assert shown["initial_positions"] == "initial_positions (double array, default [])"
    assert shown["hold_until_first_command"] == "hold_until_first_command (bool, default false)"
    assert shown["executor"] == "executor (string, default 'events'; one of ['events', 'single'])"
    assert shown["realtime_priority"] == "realtime_priority (integer, default 0; >= 0, <= 98)"
    assert "seed of the randomization sample and the sensor noise" in out


def test_mpc_help_defaults_come_from_the_default_config(tmp_path):
    from robot_rl.control.factory import MpcConfig
    from robot_rl.core.config import load_config
    from robot_rl.nodes.mpc_node import DEFAULT_CONFIG

    cfg = load_config(MpcConfig, REPO / DEFAULT_CONFIG)
    shown = listed(run_help("mpc_node", tmp_path, "--help").stdout)
    assert shown["config"] == f"config (string, default {DEFAULT_CONFIG!r})"
    assert shown["mpc.horizon"] == f"mpc.horizon (integer, default {cfg.mpc.horizon})"
    assert shown["planner"] == f"planner (string, default {cfg.planner!r}; one of ['ilqr', 'predictive', 'cem', " \
                               "'mppi'])"
    assert "sampling.method" not in shown  # `planner` chooses it: not a parameter


def test_recorder_help_before_ros_args_writes_no_bag(tmp_path):
    """``--help`` ahead of ROS arguments still only prints (the recorder would otherwise create runs/bags/...)."""
    res = run_help("recorder", tmp_path, "--help", "--ros-args", "-p", "output:=bag1")
    assert "output (string, default 'auto')" in res.stdout
