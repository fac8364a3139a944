"""robot_rl.nets."""
