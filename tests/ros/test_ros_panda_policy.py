"""The shipped Panda reach policy (models/panda_reach_gciql) over real DDS: sim_robot simulates the arm under a
held-out reality sample, policy_node runs the ONNX policy, goals arrive one after another as PoseStamped on /goal,
and the end effector (``/sim_robot/ee_position``, the true site position) reaches each within 2 cm and stays within
2 cm for the next HOLD_S. (``models/panda_reach_sac`` has the same interface and node path; tests/models checks it in
simulation.)
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.ros

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "panda_reach_gciql"
ENV_ID = "robot_rl/PandaReach-v0"
GOALS = [(0.45, 0.2, 0.3), (0.6, -0.2, 0.5), (0.35, -0.1, 0.15)]  # inside the goal box, far apart
RADIUS, TIMEOUT_S, HOLD_S = 0.02, 6.0, 0.5


def test_shipped_policy_reaches_three_goals_over_ros(procs, probe, tmp_path):
    from geometry_msgs.msg import PoseStamped
    from std_msgs.msg import Float64MultiArray

    from tests.ros.panda_goals import pose

    in_use = probe.record(Float64MultiArray, "/policy_node/goal")
    ee = probe.record(Float64MultiArray, "/sim_robot/ee_position")
    goal_pub = probe.publisher(PoseStamped, "/goal")
    procs.node("sim_robot", params={"robot": "panda", "env_id": ENV_ID, "randomization": "reality", "seed": 3,
                                    "hold_until_first_command": True})
    procs.node("policy_node", params={"robot": "panda", "model": str(MODEL), "env_id": ENV_ID,
                                      "state_dir": str(tmp_path / "state")})
    procs.wait_log("policy_node", "mode normal", 60.0)
    probe.wait_for(lambda: goal_pub.get_subscription_count() >= 1 or None, 15.0, "/goal matched by policy_node")
    probe.wait_for(lambda: len(ee) > 10 or None, 10.0, "end-effector positions")
    reached = []
    for goal in GOALS:
        with probe.lock:
            n = len(in_use)
        t0 = time.monotonic()
        probe.wait_for(lambda g=goal, n=n: goal_pub.publish(pose("link0", *g)) or (
            np.allclose(in_use[-1][1].data, g) if len(in_use) > n else None), 5.0, f"goal {goal} accepted")

        def reached_goal(g=goal, t0=t0):
            t, msg = ee[-1]  # (wait_for holds the probe's lock)
            d = float(np.linalg.norm(np.asarray(msg.data[1:]) - g))
            return (t - t0, d) if d <= RADIUS else None

        reached.append(probe.wait_for(reached_goal, TIMEOUT_S, f"end effector within {RADIUS} m of {goal}"))
        t_in = time.monotonic()
        time.sleep(HOLD_S)
        with probe.lock:
            after = [np.linalg.norm(np.asarray(m.data[1:]) - goal) for t, m in ee if t >= t_in]
        assert len(after) >= 10 and max(after) <= RADIUS, f"goal {goal} not held {HOLD_S} s: {np.round(after, 4)}"
    print("panda over ROS, time to reach each goal [s] and distance [m]:",
          [(round(t, 2), round(d, 4)) for t, d in reached])
    log = procs.log("policy_node")
    for bad in ("mode fault", "mode estop", "policy failed", "Traceback"):
        assert bad not in log[log.index("mode normal"):], log
    for name in ("policy_node", "sim_robot"):
        assert procs.stop(name) == 0, procs.log(name)
