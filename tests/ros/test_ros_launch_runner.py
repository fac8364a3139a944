"""robot-rl launch: the YAML launch subset (parsing, substitutions, errors) and running real node processes."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from robot_rl.deploy.launch_file import LaunchError, load_launch, param_literal, parse_cli_args
from robot_rl.deploy.launch_runner import node_command, run_launch

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str, name: str = "t.launch.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def test_args_substitutions_params_and_remaps(tmp_path):
    params = write(tmp_path, "sim_robot:\n  ros__parameters:\n    latency_s: 0.01\n", "p.yaml")
    f = write(tmp_path, f"""
        launch:
        - arg: {{name: robot, default: cartpole, description: robot profile}}
        - arg: {{name: rate, default: "0.02"}}
        - arg: {{name: dir, default: "$(env ROBOT_RL_TEST_DIR /fallback)/$(var robot)"}}
        - node:
            pkg: robot_rl
            exec: sim_robot
            name: sim
            namespace: ns1
            param:
            - {{name: robot, value: $(var robot)}}
            - {{name: period, value: $(var rate)}}
            - {{name: gains, value: [1.0, 2]}}
            - {{name: flag, value: true}}
            - {{name: empty, value: ""}}
            - {{from: {params}}}
            - {{name: share, value: $(find-pkg-share robot_rl)/hardware}}
            remap:
            - {{from: /joint_states, to: /$(var robot)/joint_states}}
        - node: {{pkg: robot_rl, exec: recorder, if: "false"}}
        - node: {{pkg: robot_rl, exec: recorder, name: rec2, unless: "$(var robot_is_sim)"}}
        """.replace("$(var robot_is_sim)", "0"))
    desc = load_launch(f, {"robot": "arm"}, env={})
    assert desc.values == {"robot": "arm", "rate": "0.02", "dir": "/fallback/arm"}
    assert [n.name for n in desc.nodes] == ["sim", "rec2"]
    sim = desc.nodes[0]
    assert dict(sim.params)["period"] == "0.02" and dict(sim.params)["gains"] == [1.0, 2]
    assert Path(dict(sim.params)["share"]).resolve() == (REPO / "hardware").resolve()
    words = sim.ros_args()
    assert words[:5] == ["--ros-args", "-r", "__node:=sim", "-r", "__ns:=/ns1"]
    assert ["--params-file", str(params)] == words[5:7]
    assert "robot:=arm" in words and "gains:=[1.0, 2]" in words and "flag:=true" in words
    assert "empty:=''" in words and "/joint_states:=/arm/joint_states" in words
    assert load_launch(f, env={"ROBOT_RL_TEST_DIR": "/x"}).values["dir"] == "/x/cartpole"
    cmd = node_command(sim)
    assert cmd[:3] == [sys.executable, "-m", "robot_rl.nodes.sim_robot"]


@pytest.mark.parametrize("body, cli, message", [
    ("- node: {pkg: robot_rl, exec: sim_robot, param: [{name: a, value: $(var nope)}]}", {},
     "$(var nope) names no declared arg"),
    ("- arg: {name: model, description: the policy}", {}, "argument 'model' is required (pass model:=VALUE)"),
    ("- arg: {name: a, default: $(env ROBOT_RL_UNSET_VAR)}", {}, "'ROBOT_RL_UNSET_VAR' is not set"),
    ("- arg: {name: a, default: $(command ls)}", {}, "unsupported substitution $(command"),
    ("- arg: {name: a, default: $(var x}", {}, "unclosed substitution"),
    ("- node: {pkg: robot_rl, exec: sim_robot, respawn: true}", {}, "unsupported key(s) ['respawn']"),
    ("- node: {pkg: other_pkg, exec: talker}", {}, "only package 'robot_rl'"),
    ("- include: {file: x.launch.yaml}", {}, "unsupported action 'include'"),
    ("- arg: {name: a, default: '1'}", {"b": "2"}, "unknown launch argument(s) ['b']"),
    ("- node: {pkg: robot_rl, exec: sim_robot, param: [{from: /no/such/file.yaml}]}", {}, "does not exist"),
    ("- node: {pkg: robot_rl, exec: sim_robot, if: maybe}", {}, "condition must be true/false"),
    ("- node: {pkg: robot_rl, exec: a}\n- node: {pkg: robot_rl, exec: a}", {}, "repeated: ['a']"),
])
def test_errors_name_the_file_and_entry(tmp_path, body, cli, message):
    f = write(tmp_path, "launch:\n" + body + "\n")
    with pytest.raises(LaunchError) as err:
        load_launch(f, cli, env={})
    assert message in str(err.value)
    assert str(f) in str(err.value)


def test_cli_args_and_literals():
    assert parse_cli_args(["a:=1", "b:=x:=y"]) == {"a": "1", "b": "x:=y"}
    with pytest.raises(LaunchError, match="not of the form name:=value"):
        parse_cli_args(["a=1"])
    assert param_literal(0.5) == "0.5" and param_literal("abc") == "abc" and param_literal([1, 2]) == "[1, 2]"


def test_shipped_launch_files_parse():
    for f in sorted((REPO / "launch").glob("*.launch.yaml")):
        desc = load_launch(f, {"model": "/tmp/model"} if "policy" in f.name else {}, env={})
        assert desc.nodes, f
        for node in desc.nodes:
            assert node.exec in ("sim_robot", "policy_node", "mpc_node", "recorder", "cmd_vel_source"), node


@pytest.mark.ros
def test_runs_nodes_until_duration_and_records(tmp_path, ros_env):
    bag = tmp_path / "bag"
    f = write(tmp_path, f"""
        launch:
        - arg: {{name: bag, default: {bag}}}
        - node: {{pkg: robot_rl, exec: sim_robot, name: sim_robot, param: [{{name: robot, value: cartpole}}]}}
        - node: {{pkg: robot_rl, exec: recorder, param: [{{name: output, value: $(var bag)}}]}}
        """)
    out = io.StringIO()
    code = run_launch(load_launch(f), duration_s=8.0, env=ros_env, out=out)
    log = out.getvalue()
    assert code == 0, log
    assert "[sim_robot]" in log and "[recorder]" in log and "duration 8 s reached" in log
    from rosbags.rosbag2 import Reader

    with Reader(bag) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
    assert counts["/joint_states"] > 20, counts


@pytest.mark.ros
def test_a_failing_node_stops_the_launch_with_its_exit_code(tmp_path, ros_env):
    f = write(tmp_path, """
        launch:
        - node: {pkg: robot_rl, exec: sim_robot, name: good}
        - node: {pkg: robot_rl, exec: sim_robot, name: bad, param: [{name: latency_s, value: -1.0}]}
        """)
    proc = subprocess.run([sys.executable, "-m", "robot_rl.cli", "launch", str(f), "--duration", "30"],
                          env=ros_env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "[bad] [sim_robot] refusing to start: parameter 'latency_s'" in proc.stdout
    assert "node bad exited with code 2" in proc.stdout


@pytest.mark.ros
def test_shipped_sim_policy_launch_balances_and_records(tmp_path, ros_env):
    """launch/sim_policy.launch.yaml end to end: sim_robot (reality sample) + policy_node (LQR artifact) + recorder."""
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore

    from robot_rl.core.profile import load_profile
    from robot_rl.export.lqr import write_lqr_artifact

    model = write_lqr_artifact(tmp_path / "lqr", load_profile("cartpole"), "robot_rl/CartpoleBalance-v0")
    bag = tmp_path / "bag"
    proc = subprocess.run([sys.executable, "-m", "robot_rl.cli", "launch", "sim_policy.launch.yaml", f"model:={model}",
                           f"bag:={bag}", f"state_dir:={tmp_path / 'state'}", "seed:=3", "--duration", "10"],
                          env=ros_env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    for name in ("sim_robot", "policy_node", "recorder"):
        assert f"[{name}]" in proc.stdout
    store = get_typestore(Stores.ROS2_KILTED)
    angles = []
    with Reader(bag) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
        conns = [c for c in reader.connections if c.topic == "/joint_states"]
        for conn, _t, raw in reader.messages(connections=conns):
            msg = store.deserialize_cdr(raw, conn.msgtype)
            angles.append(msg.position[list(msg.name).index("hinge")])
    assert counts["/forward_effort_controller/commands"] > 100 and counts["/policy_node/timing"] > 100, counts
    # Start-up of three processes on a loaded machine takes seconds; >= 2 s of closed loop must be in the bag.
    assert len(angles) > 200 and max(abs(a) for a in angles) < 0.3, (len(angles), max(abs(a) for a in angles))


def test_cli_print_resolves_shipped_file_from_the_share(tmp_path):
    run = [sys.executable, "-m", "robot_rl.cli", "launch", "sim_policy.launch.yaml"]
    ok = subprocess.run(run + ["model:=/m", "--print"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert [ln.split(":")[0] for ln in ok.stdout.splitlines() if ln.startswith("node ")] == [
        "node sim_robot", "node policy_node", "node recorder"]
    missing = subprocess.run(run + ["--print"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert missing.returncode == 2 and "argument 'model' is required (pass model:=VALUE)" in missing.stderr
    bad = subprocess.run(run + ["model:=/m", "record:=maybe", "--print"], capture_output=True, text=True, timeout=60,
                         cwd=tmp_path)
    assert bad.returncode == 2 and "condition must be true/false" in bad.stderr
