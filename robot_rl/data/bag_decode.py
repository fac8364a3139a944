"""Decoding a bag's raw (CDR) messages: the message types of robot_rl's topics, and one decoder per kind of topic.

``robot_rl.data.bag_reader.read_bag`` returns the raw messages by topic; the decoders here turn a topic into messages
(``_decode``: a message whose CDR does not decode is dropped, counted, and its log time kept, because it splits
episodes like data lost to damage), joint states into arrays in the profile's joint order, mapped by name
(``decode_joint_states``), and goal topics into the goals the deployed node would have used (``_goals``).
``robot_rl.data.bags`` and ``robot_rl.data.legged_bags`` build episodes from them.
"""

from __future__ import annotations

import numpy as np
from rosbags.typesys import Stores, get_typestore

from robot_rl.data.bag_raw import _NS, RawMessages
from robot_rl.data.checks import LoadReport

TYPESTORE = get_typestore(Stores.ROS2_KILTED)
JOINT_STATE = "sensor_msgs/msg/JointState"
F64_ARRAY = "std_msgs/msg/Float64MultiArray"
POSE = "geometry_msgs/msg/PoseStamped"


def _decode(raw: RawMessages, topic: str, expected: tuple[str, ...], report: LoadReport,
            undecodable: list[int]) -> list[tuple[int, object]]:
    """Decoded messages of one topic; the log times [ns] of messages whose CDR does not decode go to
    ``undecodable`` (they are dropped, counted in the report, and split episodes like lost messages).
    """
    if topic not in raw.topics:
        return []
    msgtype, items = raw.topics[topic]
    if msgtype not in expected:
        report.notes.append(f"{topic}: message type {msgtype!r} not supported (expected one of {list(expected)})")
        return []
    out, bad = [], 0
    for t_ns, payload in items:
        try:
            out.append((t_ns, TYPESTORE.deserialize_cdr(payload, msgtype)))
        except Exception:  # malformed CDR of a damaged message: counted and reported
            bad += 1
            undecodable.append(t_ns)
    if bad:
        report.notes.append(f"{topic}: {bad} message(s) could not be decoded and were dropped")
    return out


def decode_joint_states(raw: RawMessages, topic: str, names: list[str], report: LoadReport, undecodable: list[int],
                        *, sort: bool = True):
    """``(log ns, header stamp ns, q, qd, effort or None)`` of the JointState messages that carry every joint of
    ``names`` (mapped by name, in that order) with finite values; ``effort`` when every kept message has one per
    joint. ``sort``: in log-time order (else bag order). Dropped messages are counted in the report.
    """
    log, stamp, qs, qds, effs, dropped = [], [], [], [], [], 0
    for t_ns, m in _decode(raw, topic, (JOINT_STATE,), report, undecodable):
        idx = {n: i for i, n in enumerate(m.name)}
        if any(n not in idx for n in names) or len(m.velocity) != len(m.name):
            dropped += 1
            continue
        q = np.asarray([m.position[idx[n]] for n in names])
        qd = np.asarray([m.velocity[idx[n]] for n in names])
        if not (np.isfinite(q).all() and np.isfinite(qd).all()):
            dropped += 1
            continue
        log.append(t_ns)
        stamp.append(m.header.stamp.sec * _NS + m.header.stamp.nanosec)
        qs.append(q)
        qds.append(qd)
        effs.append(np.asarray([m.effort[idx[n]] for n in names]) if len(m.effort) == len(m.name) else None)
    if dropped:
        report.notes.append(f"{topic}: {dropped} message(s) without all joints {names} or with non-finite values "
                            "dropped")
    order = np.argsort(log, kind="stable") if sort else np.arange(len(log))
    n = len(names)
    eff = (np.asarray(effs).reshape(-1, n)[order]
           if effs and all(e is not None and np.isfinite(e).all() for e in effs) else None)
    return (np.asarray(log, dtype=np.int64)[order], np.asarray(stamp, dtype=np.int64)[order],
            np.asarray(qs).reshape(-1, n)[order], np.asarray(qds).reshape(-1, n)[order], eff)


def _goal_vector(msg) -> np.ndarray:
    if hasattr(msg, "data"):
        return np.asarray(msg.data, dtype=np.float64)
    p = msg.pose.position if hasattr(msg, "pose") else msg.point if hasattr(msg, "point") else msg
    return np.array([p.x, p.y, p.z], dtype=np.float64)


GOAL_IN_USE_TOPICS = ("/policy_node/goal", "/mpc_node/goal")
"""The deployed node's goal in use (Float64MultiArray, empty while it holds): what the controller really chased."""


def _goals(raw: RawMessages, topic: str, env, profile, report: LoadReport, undecodable: list[int]) -> list:
    """``(log ns, goal)`` pairs: the node's goal in use when it was recorded (``GOAL_IN_USE_TOPICS``; refused
    goals never show there), else the goal topic's messages, keeping only those the node would accept (frame =
    the profile's ``base_frame`` for stamped messages, inside the task's ``goal_box`` when it declares one).
    """
    for in_use in GOAL_IN_USE_TOPICS:
        got = [(t, _goal_vector(m)) for t, m in _decode(raw, in_use, (F64_ARRAY,), report, undecodable)]
        if got:
            return [(t, g) for t, g in got if len(g)]
    msgs = _decode(raw, topic, (F64_ARRAY, POSE, "geometry_msgs/msg/PointStamped",
                                "geometry_msgs/msg/Point"), report, undecodable)
    task = getattr(env, "task", None)
    box = getattr(task, "goal_box", None)
    out, refused = [], 0
    for t, m in msgs:
        g = _goal_vector(m)
        frame = m.header.frame_id if hasattr(m, "header") else None
        ok = np.isfinite(g).all() and (frame is None or not profile.base_frame or frame == profile.base_frame)
        if ok and box is not None and len(g) == len(box[0]):
            ok = bool(np.all(g >= np.asarray(box[0]) - 1e-9) and np.all(g <= np.asarray(box[1]) + 1e-9))
        if ok:
            out.append((t, g))
        else:
            refused += 1
    if refused:
        report.notes.append(f"{topic}: {refused} goal message(s) the node refuses (frame other than "
                            f"{profile.base_frame!r}, outside the goal box or non-finite) were not used")
    return out
