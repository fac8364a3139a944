"""Transfer reports: how an exported policy holds up on held-out "reality" samples, in the Python env and through the
deployed ROS 2 loop (``robot-rl transfer``).

For each sample seed the same randomization sample (``make(env_id, randomization, seed=s)``, exactly what sim_robot
builds) runs twice: in the Python env with the ONNX policy, and as processes over DDS on loopback (sim_robot +
policy_node with its safety filter + recorder, ``launch/sim_policy.launch.yaml``). Returns are compared with the
nominal model's (retention), failures are counted (limit hits, safety fallbacks, command timeouts, non-finite
commands, early terminations), latency and the ONNX-vs-logged-command agreement are read from each bag, and several
models (e.g. one trained with randomization and one without) run on the same samples side by side.

:mod:`robot_rl.transfer.runs` runs the samples, :mod:`robot_rl.transfer.report` writes the table, plots and
``report.md``.
"""

from robot_rl.transfer.report import summarize, write_report
from robot_rl.transfer.runs import TransferError, TransferSettings, run_transfer

__all__ = ["TransferError", "TransferSettings", "run_transfer", "summarize", "write_report"]
