"""robot_rl.export."""
