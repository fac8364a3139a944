"""Deployment helpers that import no rclpy: launch-file parsing and running, node cores (pure math), latency stats."""
