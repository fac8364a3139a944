"""Metrics of a recorded deployment read back from its bag: command rate, policy_node's sensor-to-command latency
(its ``~/timing`` topic), safety fallbacks, /diagnostics errors, non-finite commands and damage (used by the demos
and the transfer report).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np


def decoded(raw, topic: str) -> list:
    """``[(log time ns, message)]`` of ``topic`` in a ``RawMessages`` (``read_bag``), empty when it was not recorded."""
    from robot_rl.data.bags import TYPESTORE

    if topic not in raw.topics:
        return []
    msgtype, items = raw.topics[topic]
    return [(t, TYPESTORE.deserialize_cdr(payload, msgtype)) for t, payload in items]


def level(status) -> int:
    """A DiagnosticStatus level as an int (rosbags decodes the byte field as ``bytes`` or ``int``)."""
    lv = status.level
    return lv if isinstance(lv, int) else int.from_bytes(lv, "little")


def bag_metrics(bag, commands_topic: str = "/forward_effort_controller/commands") -> dict:
    """Latency, safety events and command rate read back from the recorded bag (a path, or its ``read_bag``)."""
    from robot_rl.data.bags import read_bag

    raw = read_bag(bag) if isinstance(bag, (str, Path)) else bag

    def msgs(topic: str):
        return decoded(raw, topic)

    # [seq, stamp, sensor -> publish, compute, safe(, changed)]: the first five (bags of older nodes have only those)
    timing = np.array([m.data[:5] for _, m in msgs("/policy_node/timing")], dtype=np.float64).reshape(-1, 5)
    latency = timing[:, 2][np.isfinite(timing[:, 2])] if len(timing) else np.empty(0)
    safe_cmds = int(timing[:, 4].sum()) if len(timing) else 0
    diagnostics = msgs("/diagnostics")
    to_int = [level(st) for _, m in diagnostics for st in m.status]
    # which trigger policy_node ran with (its diagnostics name it), so the latency numbers say what produced them
    triggers = [kv.value for _, m in diagnostics for st in m.status for kv in st.values if kv.key == "trigger"]
    command_msgs = msgs(commands_topic)
    commands = [np.asarray(m.data) for _, m in command_msgs]
    nonfinite = sum(int(not np.isfinite(c).all()) for c in commands)
    span_s = (command_msgs[-1][0] - command_msgs[0][0]) * 1e-9 if len(command_msgs) > 1 else 0.0
    return {
        "commands": len(commands),
        "command_rate_hz": (len(commands) - 1) / span_s if span_s > 0 else math.nan,
        "trigger": triggers[-1] if triggers else "unknown",
        "latency_s": latency,
        "latency_p50_ms": float(np.percentile(latency, 50) * 1e3) if len(latency) else math.nan,
        "latency_p99_ms": float(np.percentile(latency, 99) * 1e3) if len(latency) else math.nan,
        "latency_max_ms": float(latency.max() * 1e3) if len(latency) else math.nan,
        "safe_commands": safe_cmds,
        "diagnostics_errors": sum(1 for lv in to_int if lv >= 2),
        "nonfinite_commands": nonfinite,
        "damage": [d.describe() for d in raw.damage],
    }
