"""Peer: mjbatch stepping the same Go2 training model (run in its own venv: mjbatch 0.1.4 pins mujoco==3.14.0, ours
is 3.17.0; ``make bench`` builds ``.venv-mjbatch`` from requirements-bench-mjbatch.txt).

    .venv-mjbatch/bin/python bench/peer_mjbatch_go2.py --envs 1024 --threads 1 --seconds 5

Builds the model with robot_rl's own profile code (``hardware/go2.yaml``: feet-only contacts, position servos, no
dry friction; the same settings the Go2 task trains with), zero-offset standing targets, and prints one JSON line:
physics steps per second of ``mjbatch.Batch.step(nstep=4)`` (one control period, as our env steps) over ``--envs``
simulations on ``--threads`` threads.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--envs", type=int, default=1024)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seconds", type=float, default=5.0)
    args = p.parse_args()
    import mujoco
    import numpy as np
    from mjbatch import Batch

    from robot_rl.core.profile import load_profile

    profile = load_profile("go2")
    model = profile.load_model(visual=False, joint_friction=False)
    batch = Batch(model, args.envs, num_threads=args.threads)
    qpos, ctrl = batch.bind("qpos"), batch.bind("ctrl")
    jq = [model.jnt_qposadr[model.joint(j).id] for j in profile.command_joints]
    qpos[:, 2] = 0.30
    qpos[:, jq] = profile.standing_pose
    ctrl[:] = profile.standing_pose
    batch.forward()
    batch.step(nstep=25)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < args.seconds:
        batch.step(nstep=4)
        n += 4 * args.envs
    rate = n / (time.perf_counter() - t0)
    print(json.dumps({"peer": "mjbatch", "mujoco": mujoco.__version__, "envs": args.envs, "threads": args.threads,
                      "physics_steps_per_s": rate, "base_height_mean": float(np.mean(qpos[:, 2]))}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
