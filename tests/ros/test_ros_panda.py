"""The Franka Panda over real DDS (docs/robots.md, "Deploy over ROS 2"): goals as geometry_msgs/PoseStamped on /goal
(refused in a wrong frame and outside PandaReach-v0's goal workspace, accepted in link0) and sim_robot + policy_node
+ recorder closed loop.

Policy: a hand-made linear artifact exported by the same ``export_policy`` checks as a trained one
(``write_probe_artifact``), with the task's delta actions (targets = observed joints + 0.05 rad x a): a proportional
law that turns joint1 towards the goal (target ``home + 2 y_goal`` rad, about atan2(y, 0.5)) and keeps the other
joints at home. It shows that a goal accepted over ROS reaches the policy input and moves the simulated arm; the
shipped, trained policy reaching goals over ROS is tests/ros/test_ros_panda_policy.py.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from tests.ros.panda_goals import launch_with_goal, pose

pytestmark = pytest.mark.ros

REPO = Path(__file__).resolve().parents[2]
ENV_ID = "robot_rl/PandaReach-v0"
HOME = [0.0, 0.0, 0.0, -1.57079, 0.0, 1.57079, -0.7853]  # hardware/panda.yaml standing_pose
GAIN = 2.0  # the probe policy: joint1 target = home + GAIN * y_goal [rad]


def write_probe_artifact(out_dir: Path) -> Path:
    """PandaReach-v0 artifact of the linear map ``a = K (q* - q)`` with ``q*`` = home, joint1's ``home + GAIN *
    desired_goal[1]`` (so the target ``q + 0.05 a`` is ``q*`` within 0.05 rad), exported with the env's action map
    and reference and a parity set of 1000 env observations."""
    import torch

    from robot_rl.envs import make
    from robot_rl.export.onnx import export_policy
    from robot_rl.scale.envs import flatten_goal_obs

    env = make(ENV_ID, seed=0)
    base = env.unwrapped
    builder = base.observation_builder
    names = [*builder.names, "desired_goal[0]", "desired_goal[1]", "desired_goal[2]"]
    units = [*builder.units, "m", "m", "m"]
    layer = torch.nn.Linear(len(names), 7)
    k = 1.0 / base.action_scale
    with torch.no_grad():
        layer.weight.zero_()
        for j in range(7):
            layer.weight[j, names.index(f"joint{j + 1}_position")] = -k
            layer.bias[j] = k * HOME[j]
        layer.weight[0, names.index("desired_goal[1]")] = k * GAIN
    rng = np.random.default_rng(0)
    obs_list, (obs, _) = [], env.reset(seed=0)
    while len(obs_list) < 1000:
        obs_list.append(flatten_goal_obs(obs))
        obs, _, term, trunc, _ = env.step(rng.uniform(-0.3, 0.3, 7))
        if term or trunc:
            obs, _ = env.reset()
    export_policy(layer, out_dir, profile=base.profile, obs_names=names, obs_units=units,
                  parity_obs=np.asarray(obs_list), env_id=ENV_ID, algo="probe", name=out_dir.name,
                  parity_source="1000 observations of random-action PandaReach-v0 episodes (seed 0)",
                  action_map=base.action_map(), action_reference=base.action_reference())
    env.close()
    return out_dir


@pytest.fixture(scope="module")
def probe_model(tmp_path_factory):
    return write_probe_artifact(tmp_path_factory.mktemp("panda") / "panda_goal_probe")


def test_panda_goals_over_ros_refused_accepted_closed_loop(procs, probe, probe_model, tmp_path):
    from geometry_msgs.msg import PoseStamped
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray

    in_use = probe.record(Float64MultiArray, "/policy_node/goal")
    ee = probe.record(Float64MultiArray, "/sim_robot/ee_position")
    states = probe.record(JointState, "/joint_states")
    cmds = probe.record(Float64MultiArray, "/forward_position_controller/commands")
    goal_pub = probe.publisher(PoseStamped, "/goal")
    bag = tmp_path / "bag"
    procs.node("sim_robot", params={"robot": "panda", "env_id": ENV_ID, "randomization": "reality", "seed": 1,
                                    "hold_until_first_command": True})
    procs.node("policy_node", params={"robot": "panda", "model": str(probe_model), "env_id": ENV_ID,
                                      "state_dir": str(tmp_path / "state")})
    procs.node("recorder", params={"robot": "panda", "output": str(bag)})
    procs.wait_log("policy_node", "mode normal", 60.0)
    procs.wait_log("recorder", "recording", 30.0)
    assert "no goal yet: holding position until a goal arrives on /goal" in procs.log("policy_node")
    probe.wait_for(lambda: len(cmds) > 20 and len(states) > 20, 10.0, "hold commands and joint states")
    with probe.lock:
        q_hold = np.array(states[-1][1].position)
        held = np.array(cmds[-1][1].data)
    assert np.allclose(held, q_hold, atol=0.02), "without a goal the arm holds where it is"

    def send(msg, what):
        """Publish a goal (until the node answers on ~/goal); returns (latency [s], goal in use)."""
        with probe.lock:
            n = len(in_use)
        t0 = time.monotonic()
        goal_pub.publish(msg)
        rx, m = probe.wait_for(lambda: in_use[n] if len(in_use) > n else None, 5.0, f"~/goal after {what}")
        return rx - t0, list(m.data)

    # every goal reaches the policy node and the recorder (a volatile publisher drops what unmatched readers miss)
    probe.wait_for(lambda: goal_pub.get_subscription_count() >= 2 or None, 15.0, "/goal matched by 2 readers")
    # 1. a goal in the wrong frame: refused, naming both frames; still no goal (holding)
    lat_frame, used = send(pose("world", 0.5, -0.2, 0.4), "a goal in frame world")
    assert used == []
    procs.wait_log("policy_node", "it is in frame 'world', goals must be in the robot's base frame 'link0'", 5.0)
    # 2. a good goal in link0: accepted, the policy turns joint1 to ~ GAIN * 0.2 = 0.4 rad
    lat_ok, used = send(pose("link0", 0.5, 0.2, 0.4), "a goal in link0")
    assert np.allclose(used, [0.5, 0.2, 0.4])
    target = HOME[0] + GAIN * 0.2
    probe.wait_for(lambda: states and abs(states[-1][1].position[0] - target) < 0.03, 20.0, "joint1 at 0.4 rad")
    # 3. outside the workspace (x 0.9 > 0.7 m): not chased, the previous goal stays
    lat_box, used = send(pose("link0", 0.9, -0.2, 0.4), "a goal outside the workspace")
    assert np.allclose(used, [0.5, 0.2, 0.4])
    procs.wait_log("policy_node", "refused, not chased: outside the task's goal workspace", 5.0)
    t_box = time.monotonic()
    time.sleep(2.0)
    with probe.lock:
        after = [m.position[0] for t, m in states if t > t_box]
        ee_last = list(ee[-1][1].data)
    # (the reality sample's gains and friction leave a few centiradians of tracking error)
    assert after and max(abs(q - target) for q in after) < 0.05, "a refused goal does not move the arm"
    assert ee_last[2] > 0.05, f"the end effector turned to +y (goal side): {ee_last}"
    print(f"panda over ROS: ~/goal answered {1e3 * lat_frame:.1f} ms after a wrong-frame goal, "
          f"{1e3 * lat_ok:.1f} ms after a good one, {1e3 * lat_box:.1f} ms after one outside the workspace; "
          f"joint1 {after[-1]:.3f} rad (target {target:.3f}), ee {ee_last[1:]} m")
    log = procs.log("policy_node")
    # from the first goal on (a stale-sensor fault while three Python processes start on 2 cores is the safety
    # filter doing its job, not what this test is about)
    during = log[log.index("it is in frame 'world'"):]
    for bad in ("mode fault", "mode estop", "policy failed", "Traceback"):
        assert bad not in during, log
    # the robot lost its commander at most once, at start-up (three Python processes starting on 2 cores)
    assert procs.log("sim_robot").count("no command for") <= 1, procs.log("sim_robot")
    for name in ("policy_node", "recorder", "sim_robot"):  # (the robot outlives its commander, as on hardware)
        assert procs.stop(name) == 0, procs.log(name)
    assert "refused commands 0, physics warnings 0" in procs.log("sim_robot"), procs.log("sim_robot")


    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    with Reader(bag) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
        types = {c.topic: c.msgtype for c in reader.connections}
        frames = [store.deserialize_cdr(raw, c.msgtype).header.frame_id
                  for c, _, raw in reader.messages(connections=[c for c in reader.connections if c.topic == "/goal"])]
    assert types["/goal"] == "geometry_msgs/msg/PoseStamped" and frames == ["world", "link0", "link0"], frames
    assert counts["/joint_states"] > 500 and counts["/forward_position_controller/commands"] > 100, counts
    # one per goal message (the one sent at start may precede the recorder)
    assert counts["/policy_node/goal"] >= 3 and counts["/sim_robot/ee_position"] > 50, counts
    # log replay: the import rebuilds the observation and normalizes the delta targets against the observed joints;
    # the ONNX policy on the rebuilt observations gives back the logged commands
    from robot_rl.commands.replay import action_agreement, onnx_policy
    from robot_rl.data.bags import import_bag
    from robot_rl.envs import make

    env = make(ENV_ID)
    episodes, report = import_bag(bag, env)
    assert episodes, report.describe()
    tolerance = 0.01 / env.unwrapped.action_scale  # 10 mrad of joint target, in normalized action units
    agreement = action_agreement(onnx_policy(probe_model, env), episodes, tolerance)
    print(f"panda bag: {sum(len(e.actions) for e in episodes)} steps in {len(episodes)} episodes, "
          f"{100 * agreement['within']:.1f} % of the ONNX targets within 10 mrad of the logged ones")
    assert all(np.abs(e.actions).max() <= 1.0 for e in episodes)
    assert agreement["within"] >= 0.9, agreement["mae"]


def test_panda_initial_goal_outside_the_workspace_is_a_refused_start(procs, probe_model):
    procs.node("policy_node", params={"robot": "panda", "model": str(probe_model), "env_id": ENV_ID,
                                      "goal": [0.5, 0.0, 0.9]})
    assert procs.wait("policy_node", 60.0) == 2
    assert "parameter 'goal': initial goal refused: goal (0.5, 0, 0.9) in frame 'link0' refused, not chased" in \
        procs.log("policy_node")


def test_shipped_sim_panda_launch_takes_a_goal_and_records(tmp_path, ros_env, probe, probe_model):
    """launch/sim_panda_policy.launch.yaml end to end with ``robot-rl launch``: a goal from the probe moves the arm."""
    out, _ = launch_with_goal(tmp_path, ros_env, probe, ["sim_panda_policy.launch.yaml", f"model:={probe_model}",
                                                         "seed:=2"], "policy_node", (0.5, -0.15, 0.4),
                              lambda ee: ee[1] < -0.05, "the end effector turned to -y", 20.0)
    assert "goal [0.5, -0.15, 0.4] accepted" in out, out[-4000:]
    after_goal = out[out.index("goal [0.5, -0.15, 0.4] accepted"):]  # (start-up: see above)
    # a joint-state stream stalled for longer than the sensor timeout on a loaded 2-core machine (seen once: 0.17 s
    # and 0.075 s in one run) is the safety filter doing its job; any other fault, an e-stop or a policy error is not
    bad = [line for line in after_goal.splitlines() if ("mode fault" in line and "joint_states stale" not in line)
           or "mode estop" in line or "policy failed" in line]
    assert not bad, out[-4000:]
