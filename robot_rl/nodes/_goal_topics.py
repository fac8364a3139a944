"""policy_node's goal input (goal-conditioned tasks; mpc_node inherits it): the goal topic of the profile's
``topics.goal_type`` (std_msgs/Float64MultiArray or geometry_msgs/PoseStamped), every goal checked by a
``robot_rl.deploy.goal_input.GoalGate`` (frame, finite, the task's declared workspace) before the loop takes it, and
``~/goal``, the goal in use. A mixin of ``PolicyNode``: it uses the node's ``goals``, ``loop`` and ``env_id``.
"""

from __future__ import annotations

from geometry_msgs.msg import PoseStamped
from std_msgs.msg import Float64MultiArray


class GoalTopics:
    """Goal subscription, checks and ``~/goal`` of ``PolicyNode`` (an ``rclpy`` node)."""

    def _goal_topics(self, topics, qos) -> str:
        """Subscribe the goal topic (of the profile's ``goal_type``) and advertise ``~/goal``; returns a description."""
        if topics.goal_type == "pose":
            self.create_subscription(PoseStamped, topics.goal, self._on_goal_pose, qos)
        else:
            self.create_subscription(Float64MultiArray, topics.goal, self._on_goal, qos)
        self.pub_goal = self.create_publisher(Float64MultiArray, "~/goal", qos)
        return (f"; goals ({topics.goal_type}) on {topics.goal} in frame {self.goals.frame_name!r}, "
                f"workspace {self.goals.workspace()}, goal in use on ~/goal")

    def _goal_gate(self, goal_dim: int, profile, goal):
        """``GoalGate`` of a goal-conditioned task: frame = the profile's ``base_frame``, workspace = the task's
        declared ``goal_box`` (none declared: any finite goal), initial goal = parameter ``goal`` (none: hold).
        """
        from robot_rl.deploy.goal_input import GoalGate
        from robot_rl.envs import task_spec

        try:
            box = task_spec(self.env_id).goal_box if self.env_id else None
        except (KeyError, TypeError):
            box = None
        low, high = box if box is not None else (None, None)
        return GoalGate(goal_dim, frame=profile.base_frame, low=low, high=high, goal=goal or None)

    def _on_goal(self, msg: Float64MultiArray) -> None:
        self._take_goal(msg.data, None)

    def _on_goal_pose(self, msg: PoseStamped) -> None:
        p = msg.pose.position
        self._take_goal((p.x, p.y, p.z), msg.header.frame_id)

    def _take_goal(self, values, frame_id: str | None) -> None:
        d = self.goals.check(values, frame_id)
        if d.accepted:
            self.loop.set_goal(d.goal)
            self.get_logger().info(f"goal {d.goal.tolist()} accepted", throttle_duration_sec=1.0)
        else:  # one throttled call site per kind: a stream of one kind does not hide a refusal of another
            self.loop.goals_rejected += 1
            if d.kind == "frame":
                self.get_logger().warning(d.reason, throttle_duration_sec=1.0)
            elif d.kind == "workspace":
                self.get_logger().warning(d.reason, throttle_duration_sec=1.0)
            else:
                self.get_logger().warning(d.reason, throttle_duration_sec=1.0)
        self._publish_goal()

    def _publish_goal(self) -> None:
        """``~/goal``: the goal in use after every goal message (empty while holding without one)."""
        g = self.loop.goal
        self.pub_goal.publish(Float64MultiArray(data=[] if g is None else [float(v) for v in g]))
