"""robot_rl.algos."""
