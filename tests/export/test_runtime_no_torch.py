"""The robot side (runtime + safety filter) imports and runs without torch: checked in a fresh interpreter where
importing torch raises."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import sys

    class NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("torch is not available on the robot")
            return None

    sys.meta_path.insert(0, NoTorch())
    import numpy as np
    import robot_rl.export.runtime as rt
    import robot_rl.safety as safety
    from robot_rl.core.profile import load_profile

    profile = load_profile(sys.argv[2])
    pol = rt.OnnxPolicy(sys.argv[1], profile)
    cmd = pol(np.zeros(pol.n_obs))
    f = safety.SafetyFilter(profile)
    out, status = f.filter(cmd, 0.0)
    assert "torch" not in sys.modules, "torch got imported"
    print("ok", cmd.shape, out.shape, status.mode)
""")


def test_runtime_and_safety_run_without_torch(exported, robot_dir):
    res = subprocess.run([sys.executable, "-c", SCRIPT, str(exported[0]), str(robot_dir / "testbot.yaml")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok (2,) (2,) waiting"
