"""robot_rl.control."""
