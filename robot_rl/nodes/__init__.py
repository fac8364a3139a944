"""robot_rl.nodes."""
