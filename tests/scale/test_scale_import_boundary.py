"""Ray is optional: importing robot_rl.scale, its modules and the sweep command does not import ray."""

import subprocess
import sys


def test_scale_modules_import_without_ray():
    code = ("import sys\n"
            "import robot_rl.scale, robot_rl.scale.config, robot_rl.scale.seeding, robot_rl.scale.worker\n"
            "import robot_rl.scale.source, robot_rl.scale.ppo_rollout, robot_rl.scale.offpolicy_rollout\n"
            "import robot_rl.scale.cluster, robot_rl.train.sweep, robot_rl.commands.sweep, robot_rl.cli\n"
            "import robot_rl.algos.ppo, robot_rl.algos.sac, robot_rl.train.runner\n"
            "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"ray imported at module import time: {out.stdout}"
