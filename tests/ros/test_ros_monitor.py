"""policy_node with its dynamics monitor over DDS (launch/sim_policy.launch.yaml: sim_robot, policy_node,
recorder): far outside the training ranges (joint damping +0.1-0.2) the alarm latches the e-stop and /diagnostics
says why, or hands the robot over to mpc_node (``fallback:=true``); in distribution it stays quiet.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from robot_rl.data.bags import TYPESTORE, read_bag
from robot_rl.deploy.launch_file import load_launch
from robot_rl.deploy.launch_runner import run_launch

pytestmark = pytest.mark.ros

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "cartpole_swingup_sac"


def _run(tmp_path: Path, randomization: str, seed: int, ros_env: dict, **extra) -> tuple[dict, list, str]:
    bag = tmp_path / "bag"
    args = {"model": str(MODEL), "monitor": str(MODEL / "monitor"), "env_id": "robot_rl/CartpoleSwingupRail-v0",
            "randomization": randomization, "seed": str(seed), "bag": str(bag), "state_dir": str(tmp_path / "state"),
            **extra}
    out = io.StringIO()
    # 11 s: the alarm comes ~2.9 s after the policy starts and start-up takes 3.5-5 s on a loaded 2-core machine, so
    # at 9 s a slow start leaves little more than the 50 latched rows the e-stop test asks for (the test failed once
    # under load, cause not captured)
    rc = run_launch(load_launch(REPO / "launch" / "sim_policy.launch.yaml", args), duration_s=11.0, env=ros_env,
                    out=out)
    assert rc == 0, out.getvalue()[-3000:]
    raw = read_bag(bag)

    def msgs(topic):
        msgtype, items = raw.topics.get(topic, (None, []))
        return [TYPESTORE.deserialize_cdr(p, msgtype) for _t, p in items]

    monitor = [st for m in msgs("/diagnostics") for st in m.status if st.name.endswith("dynamics monitor")]
    timing = np.array([m.data for m in msgs("/policy_node/timing")])
    commands = np.array([m.data for m in msgs("/forward_effort_controller/commands")])
    return {"levels": [st.level if isinstance(st.level, int) else int.from_bytes(st.level, "little")
                       for st in monitor], "messages": [st.message for st in monitor], "commands": commands}, timing, \
        out.getvalue()


def test_alarm_latches_the_estop_far_outside_training(tmp_path, ros_env):
    diag, timing, log = _run(tmp_path, str(REPO / "bench" / "randomization" / "ood_joint_damping.yaml"), 0, ros_env)
    assert 2 in diag["levels"], (diag, log[-3000:])
    assert any("does not behave like the simulator" in m for m in diag["messages"])
    safe = timing[:, 4] > 0
    start = int(np.argmax(~safe))  # the first policy command (before it: waiting for joint states)
    latched = int(np.flatnonzero(~safe)[-1]) + 1  # from here to the end only safe commands: the e-stop
    assert latched - start > 25 and len(safe) - latched > 50, (start, latched, len(safe))
    latch = list((tmp_path / "state").iterdir())
    assert latch and "dynamics monitor" in latch[0].read_text()


def test_alarm_hands_the_robot_over_to_mpc_node(tmp_path, ros_env):
    """``monitor_action:=fallback fallback:=true``: mpc_node plans on the live state from the start (its commands on
    /fallback/commands); after the alarm policy_node sends mpc_node's commands through its safety filter instead of
    the policy's, with no e-stop, and /diagnostics says it handed over."""
    diag, timing, log = _run(tmp_path, str(REPO / "bench" / "randomization" / "ood_joint_damping.yaml"), 0, ros_env,
                             monitor_action="fallback", fallback="true",
                             fallback_state_dir=str(tmp_path / "mpc_state"))
    assert 1 in diag["levels"] and 2 not in diag["levels"], (diag["levels"], log[-3000:])  # WARN: handed over
    assert any("handed over to the fallback controller on /fallback/commands" in m for m in diag["messages"])
    assert "handed over to the fallback controller" in log and "[mpc_node]" in log
    safe = timing[:, 4] > 0
    start = int(np.argmax(~safe))
    assert not safe[start:].any(), np.flatnonzero(safe[start:])  # never the safe command after the start
    span = timing[-1, 1] - timing[start, 1]  # sensor stamps [s]: 50 Hz commands all through, after the hand-over too
    assert span > 4.0 and len(timing) - start > 0.9 * span / 0.02, (span, len(timing) - start)
    assert not any((tmp_path / "state").iterdir()) if (tmp_path / "state").exists() else True  # no e-stop latch
    # after the alarm (~2-3 s in), mpc_node's commands move the cart: far from zero effort
    assert np.abs(diag["commands"][-100:, 0]).max() > 1.0


def test_quiet_in_distribution_through_robot_rl_transfer(tmp_path, ros_env):
    """An in-distribution sample through ``robot-rl transfer --monitor``: no alarm, and the run is as good as the
    Python env's."""
    from robot_rl.transfer import TransferSettings, run_transfer

    s = TransferSettings(models=(MODEL,), samples=1, seed=700_000_000, randomization="default", monitor=True,
                         out_dir=tmp_path / "t", progress=False)
    entry = run_transfer(s)["models"][0]
    py, ros = entry["python"][0], entry["ros"][0]
    assert "error" not in ros, ros
    assert ros["monitor_alarm"] is False
    # at least 90 % of the Python env's return (on this sample the shipped policy scored 404 through ROS, 355 in Python)
    assert ros["return"] > 0.9 * py["return"], (ros["return"], py["return"])
