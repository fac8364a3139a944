"""robot_rl.core."""
