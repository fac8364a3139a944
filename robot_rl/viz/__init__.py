"""Rendering: offscreen MuJoCo videos of evaluations, deployments and replays (numpy + mujoco, no torch)."""
