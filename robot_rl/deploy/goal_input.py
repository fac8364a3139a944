"""Goals for goal-conditioned policies on a robot, without ROS: which goal messages are accepted, and why not.

A goal reaches ``policy_node`` on the profile's goal topic as one of two message types, chosen by the profile's
``topics.goal_type`` (one topic carries one type in ROS; every node of the robot reads the same profile, so the
policy node and the recorder agree on it):

* ``array``: std_msgs/Float64MultiArray, ``goal_dim`` values in task units (a goal position is in the base frame;
  the message carries no frame, so none is checked).
* ``pose``: geometry_msgs/PoseStamped; ``pose.position`` is the goal [m] (the orientation is not used: the tasks
  reach a position), and ``header.frame_id`` must name the frame the task's goals are expressed in, the profile's
  ``base_frame``. No transform is applied (no tf here): a goal in another frame, or in no frame, is refused.

A goal outside the task's goal workspace (``TaskSpec.goal_box``: the box the env samples its goals from, in the
base frame) is refused too: the policy was never trained there, so the robot does not chase it. A refused goal
leaves the previous goal in use (or none: the node holds its position). ``GoalGate.check`` decides; the node logs
``Decision.reason`` and publishes the goal in use.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

GOAL_TYPES = ("array", "pose")
"""Message types of the goal topic: ``array`` std_msgs/Float64MultiArray, ``pose`` geometry_msgs/PoseStamped."""

BOX_TOLERANCE = 1e-9
"""Slack of the workspace test [goal units]: a goal on the box's face (up to rounding) is inside."""


@dataclass(frozen=True)
class Decision:
    """Outcome of one goal message: ``accepted``; ``goal`` the goal in use afterwards (None: none yet, the robot
    holds); ``reason`` why a goal was refused, in words ("" when accepted), and ``kind`` of refusal.
    """

    accepted: bool
    goal: np.ndarray | None
    reason: str = ""
    kind: str = ""
    """Why refused: ``malformed`` (length, not finite), ``frame`` or ``workspace`` ("" when accepted)."""


def _fmt(values) -> str:
    return "(" + ", ".join(f"{float(v):.4g}" for v in values) + ")"


class GoalGate:
    """The goal a goal-conditioned policy uses, and the checks a new goal must pass.

    Args:
        goal_dim: length of the task's goal vector.
        frame: the frame goals must be given in (the profile's ``base_frame``; "" for a robot without one: then a
            ``pose`` goal's ``frame_id`` must be empty, i.e. the world frame the task's goals are in).
        low, high: corners of the task's goal workspace (``TaskSpec.goal_box``) in ``frame``; None: any finite goal
            of the right length is accepted.
        goal: the initial goal (checked like any other; ``ValueError`` if refused), or None: none until one is
            accepted.

    """

    def __init__(self, goal_dim: int, *, frame: str = "", low: Sequence[float] | None = None,
                 high: Sequence[float] | None = None, goal: Sequence[float] | None = None):
        self.goal_dim = int(goal_dim)
        self.frame = str(frame)
        if (low is None) != (high is None):
            raise ValueError("goal workspace needs both low and high corners")
        self.low = None if low is None else np.asarray(low, dtype=np.float64)
        self.high = None if high is None else np.asarray(high, dtype=np.float64)
        if self.low is not None and (self.low.shape != (self.goal_dim,) or self.high.shape != (self.goal_dim,)
                                     or not np.all(self.low <= self.high)):
            raise ValueError(f"goal workspace corners must have {self.goal_dim} values each with low <= high, got "
                             f"{self.low.tolist()} / {self.high.tolist()}")
        self.goal: np.ndarray | None = None
        self.accepted = 0
        self.refused = 0
        self.last_reason = ""
        if goal is not None and len(goal) > 0:
            d = self.check(goal)
            if not d.accepted:
                raise ValueError(f"initial goal refused: {d.reason}")

    @property
    def frame_name(self) -> str:
        """The frame as written in messages ("world" for the empty frame)."""
        return self.frame or "world"

    def workspace(self) -> str:
        """The goal workspace in words (for logs and docs)."""
        if self.low is None:
            return "any finite goal"
        return f"{_fmt(self.low)} .. {_fmt(self.high)} in frame {self.frame_name!r}"

    def check(self, values: Sequence[float], frame_id: str | None = None) -> Decision:
        """A goal message with ``values`` (and, for a stamped message, ``frame_id``): accepted -> it is the goal in
        use; refused -> the previous goal stays (``Decision.reason`` says why, naming what was expected).
        """
        kind, why = self._problem(values, frame_id)
        if why:
            self.refused += 1
            self.last_reason = why
            return Decision(False, self.goal, why, kind)
        self.goal = np.array([float(v) for v in values], dtype=np.float64)
        self.accepted += 1
        return Decision(True, self.goal)

    def _problem(self, values, frame_id) -> tuple[str, str]:
        try:
            g = [float(v) for v in values]
        except (TypeError, ValueError):
            return "malformed", f"goal {values!r} is not a list of numbers"
        kept = "keeping the previous goal " + _fmt(self.goal) if self.goal is not None else \
            "no goal yet: holding position"
        if len(g) != self.goal_dim or not all(math.isfinite(v) for v in g):
            return "malformed", f"goal {g} refused: expected {self.goal_dim} finite values; {kept}"
        if frame_id is not None and frame_id != self.frame:
            got = repr(frame_id) if frame_id else "no frame (empty frame_id)"
            return "frame", (f"goal {_fmt(g)} refused: it is in frame {got}, goals must be in the robot's base "
                             f"frame {self.frame_name!r} (no transform is applied); {kept}")
        if self.low is not None:
            outside = [f"{'xyz'[i] if self.goal_dim == 3 else i}={v:.4g} not in [{lo:.4g}, {hi:.4g}]"
                       for i, (v, lo, hi) in enumerate(zip(g, self.low, self.high))
                       if not lo - BOX_TOLERANCE <= v <= hi + BOX_TOLERANCE]
            if outside:
                return "workspace", (f"goal {_fmt(g)} in frame {self.frame_name!r} refused, not chased: outside "
                                     f"the task's goal workspace {self.workspace()} ({', '.join(outside)}); {kept}")
        return "", ""
