"""robot_rl.sysid: identify a robot's physical parameters (masses, damping, motor gain, latency) from logged runs.

A logged run (rosbag2 bag or recorded episodes: joint states at the control period and the commands sent) is
re-simulated window by window from the logged states with the logged commands, and the parameters minimize the
difference (``fit``). The result re-centres a domain-randomization profile on the identified values (``report``),
so training randomizes around the real robot instead of the nominal MJCF. ``robot-rl sysid`` runs it on a bag;
docs/sysid.md describes the method and its measured accuracy.

* ``params``: which parameters, their bounds and validation, how a value is written into a model;
* ``fit``: windowed multi-step re-simulation (``mujoco.rollout``) and ``scipy.optimize.least_squares``;
* ``logs``: bags and episodes -> ``JointLog``; ``report``: table, JSON and the re-centred profile.
"""
