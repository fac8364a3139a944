"""Subcommands of ``robot-rl``; one module each (see ``robot_rl/cli.py``)."""
