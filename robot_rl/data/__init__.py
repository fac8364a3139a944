"""robot_rl.data: replay buffer and rollout storage (online learners), episode datasets, bags, relabeling.

* ``dataset``: episode datasets in Minari's HDF5 layout with a byte index and CRC-32 per array
  (``DatasetWriter``, ``load_dataset``, ``record_episode``); docs/datasets.md.
* ``checks``: semantic checks run on every episode written or loaded, and the damage reports (``LoadReport``).
* ``bags``: rosbag2 (MCAP / sqlite3) export and import with ``rosbags``, MCAP chunk walker with CRC checks.
* ``relabel``: flat transitions and hindsight goal relabeling (future / geometric / random / original).
* ``replay`` / ``rollout``: the online learners' buffers.

Submodules are imported on use (``import robot_rl.data`` stays cheap and torch-free).
"""
