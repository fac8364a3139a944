"""MPC on the Franka Panda over real DDS (docs/control.md, "MPC on the Panda"): sim_robot with PandaReach-v0's
held-out reality sample and mpc_node with config/mpc_panda.yaml (iLQR on the exact model, horizon 30). Goals are
geometry_msgs/PoseStamped on /goal in link0, checked by the policy node's GoalGate: a goal in another frame and one
outside the task's workspace are refused and not chased; three goals in link0 are reached within 0.02 m.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.ros.panda_goals import launch_with_goal, pose

pytestmark = pytest.mark.ros

GOALS = [(0.5, 0.2, 0.3), (0.6, -0.15, 0.5), (0.4, 0.0, 0.2)]
REACH_S = 8.0  # bound on the time to get within 0.02 m of each goal (measured: ~1-2.5 s on a loaded 2-core machine)
# The replan budget here is 100 ms, not the config's 20 ms: on the shared 2-core test machine (two or three other
# processes at 100% CPU) the node's replans take 16-40 ms (p50) and at 20 ms many would be deadline misses (the arm
# then holds). The 20 ms target is measured by bench/bench_panda_mpc.py (bench/results/panda_mpc.md), not asserted
# here.
REPLAN_BUDGET_S = 0.1


def test_panda_mpc_reaches_goals_over_ros_and_refuses_bad_ones(procs, probe, tmp_path):
    from geometry_msgs.msg import PoseStamped
    from std_msgs.msg import Float64MultiArray

    t_start = time.monotonic()
    in_use = probe.record(Float64MultiArray, "/mpc_node/goal")
    ee = probe.record(Float64MultiArray, "/sim_robot/ee_position")
    goal_pub = probe.publisher(PoseStamped, "/goal")
    procs.node("sim_robot", params={"robot": "panda", "env_id": "robot_rl/PandaReach-v0", "randomization": "reality",
                                    "seed": 3, "hold_until_first_command": True})
    procs.node("mpc_node", params={"robot": "panda", "config": "config/mpc_panda.yaml",
                                   "mpc.replan_budget_s": REPLAN_BUDGET_S, "state_dir": str(tmp_path / "state")})
    procs.wait_log("mpc_node", "mode normal", 60.0)
    log = procs.log("mpc_node")
    assert "no goal yet: holding position until a goal arrives on /goal" in log, log
    assert "goals (pose) on /goal in frame 'link0'" in log, log
    probe.wait_for(lambda: len(ee) > 5, 10.0, "the end-effector position")
    # a volatile publisher drops what an unmatched reader misses: wait for the DDS match first
    probe.wait_for(lambda: goal_pub.get_subscription_count() >= 1 or None, 15.0, "/goal matched by mpc_node")

    def ee_now():
        with probe.lock:
            return np.array(ee[-1][1].data[1:4])

    def send(msg, what):
        """Publish a goal until mpc_node answers on ~/goal; returns the goal in use."""
        with probe.lock:
            n = len(in_use)
        goal_pub.publish(msg)
        _, m = probe.wait_for(lambda: in_use[n] if len(in_use) > n else None, 5.0, f"~/goal after {what}")
        return list(m.data)

    start = ee_now()
    # 1. wrong frame and 2. outside the workspace (z 0.8 > 0.6 m): refused with the reason, nothing chased
    assert send(pose("world", 0.5, 0.2, 0.3), "a goal in frame world") == []
    procs.wait_log("mpc_node", "it is in frame 'world', goals must be in the robot's base frame 'link0'", 5.0)
    assert send(pose("link0", 0.5, 0.0, 0.8), "a goal outside the workspace") == []
    procs.wait_log("mpc_node", "refused, not chased: outside the task's goal workspace", 5.0)
    time.sleep(1.0)
    moved = float(np.linalg.norm(ee_now() - start))
    # (holding, the hand still moves a few mm: the reality sample's 1 N pushes and the sag of its heavier links under
    # the nominal gravity compensation, measured 5.1-5.6 mm in 1 s; chasing either goal would move it 0.1-0.4 m)
    assert moved < 0.015, f"the arm moved {moved:.4f} m after refused goals"
    # 3. three goals in link0: each reached within 0.02 m within REACH_S
    reach_s = []
    for g in GOALS:
        used = send(pose("link0", *g), f"goal {g}")
        assert np.allclose(used, g), used
        t0 = time.monotonic()
        probe.wait_for(lambda g=g: np.linalg.norm(np.array(ee[-1][1].data[1:4]) - g) < 0.02, REACH_S,
                       f"the end effector within 0.02 m of {g} (now {ee_now()})")
        reach_s.append(time.monotonic() - t0)
        time.sleep(0.3)
        err = float(np.linalg.norm(ee_now() - g))
        assert err < 0.02, f"the end effector left goal {g}: {err:.4f} m"
    # a refused goal while one is in use: the previous goal stays, the arm stays there
    assert np.allclose(send(pose("link0", 0.9, 0.0, 0.3), "a goal outside the workspace"), GOALS[-1])
    time.sleep(0.5)
    assert np.linalg.norm(ee_now() - GOALS[-1]) < 0.02
    log = procs.log("mpc_node")
    during = log[log.index("it is in frame 'world'"):]
    for bad in ("mode fault", "mode estop", "Traceback", "planner thread failed"):
        assert bad not in during, log
    assert procs.stop("mpc_node") == 0, procs.log("mpc_node")
    assert procs.stop("sim_robot") == 0, procs.log("sim_robot")
    stats = [line for line in procs.log("mpc_node").splitlines() if "planner: " in line]
    assert stats, procs.log("mpc_node")
    assert "physics warnings 0" in procs.log("sim_robot"), procs.log("sim_robot")
    print(f"panda MPC over ROS: reached {GOALS} in {[round(s, 2) for s in reach_s]} s; "
          f"{stats[-1].split('planner: ')[1]}; test wall {time.monotonic() - t_start:.1f} s")


def test_shipped_sim_panda_mpc_launch_reaches_a_goal_and_records(tmp_path, ros_env, probe,
                                                                 config="config/mpc_panda.yaml"):
    """launch/sim_panda_mpc.launch.yaml end to end with ``robot-rl launch``: a goal from the probe is reached.
    (``config=config/mpc_panda_sampling.yaml``, predictive sampling, passed too when run by hand: 26 s, left out of
    ``make test`` for time; tests/control/test_control_panda_mpc.py covers that planner's closed loop.)"""
    goal = (0.45, -0.2, 0.35)
    out, _ = launch_with_goal(tmp_path, ros_env, probe, ["sim_panda_mpc.launch.yaml", "seed:=4", f"config:={config}",
                                                         f"replan_budget_s:={REPLAN_BUDGET_S}"], "mpc_node", goal,
                              lambda ee: np.linalg.norm(ee - goal) < 0.02, f"the end effector within 0.02 m of {goal}",
                              REACH_S)
    assert "goal [0.45, -0.2, 0.35] accepted" in out, out[-4000:]
    assert f"{'ilqr' if config.endswith('mpc_panda.yaml') else 'predictive'} MPC from {config}" in out, out[-4000:]
    assert "Traceback" not in out and "planner thread failed" not in out, out[-4000:]


@pytest.mark.parametrize("params, text", [
    ({"env_id": "robot_rl/CartpoleBalance-v0"},
     "parameter 'env_id': task 'robot_rl/CartpoleBalance-v0' is for robot 'cartpole', not 'panda'"),
    ({"env_id": ""}, "goal_term ('ee') and env_id ('') go together"),
    ({"goal": [0.5, 0.0, 0.9]}, "parameter 'goal': initial goal refused: goal (0.5, 0, 0.9) in frame 'link0' refused"),
])
def test_panda_mpc_bad_goal_setup_is_a_refused_start(procs, params, text):
    procs.node("mpc_node", params={"robot": "panda", "config": "config/mpc_panda.yaml", **params})
    assert procs.wait("mpc_node", 60.0) == 2, procs.log("mpc_node")
    assert text in procs.log("mpc_node"), procs.log("mpc_node")
