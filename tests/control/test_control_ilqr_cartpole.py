"""iLQR swings up the MuJoCo cart-pole (sim/cartpole/cartpole.xml) inside the actuator range."""

import mujoco
import numpy as np

from robot_rl.control import ilqr
from robot_rl.control.costs import Cost
from robot_rl.control.dynamics import MujocoDynamics
from robot_rl.core.assets import find_asset
from robot_rl.core.profile import load_profile


def test_ilqr_swings_up_cartpole_within_150_iterations():
    model = mujoco.MjModel.from_xml_path(str(find_asset("sim/cartpole/cartpole.xml")))
    dyn = MujocoDynamics(model, frame_skip=2)  # control period 0.02 s, as the env
    effort_max = load_profile("cartpole").joints[0].effort_max
    np.testing.assert_allclose(dyn.u_max, [effort_max])
    cost = Cost.from_yaml("config/costs/cartpole_swingup.yaml")
    x0 = np.array([0.0, np.pi, 0.0, 0.0])  # hanging at rest
    T = 150  # 3 s
    U0 = 0.1 * np.random.default_rng(0).standard_normal((T, 1))  # exactly zero is a stationary point (hanging)
    sol = ilqr.solve(dyn, cost, x0, U0, ilqr.IlqrSettings(max_iterations=150))
    assert sol.iterations <= 150
    assert np.all(np.abs(sol.U) <= effort_max + 1e-12)
    assert np.abs(sol.U).max() > 0.99 * effort_max  # the swing-up needs (and uses) the full range
    cos = np.cos(sol.X[:, 1])
    assert np.all(cos[-25:] > 0.95), cos[-25:]  # up for the last 0.5 s
    assert abs(sol.X[-1, 0]) < 0.5 and np.all(np.abs(sol.X[:, 0]) < 1.8)  # stays on the rail
    assert all(b <= a + 1e-9 for a, b in zip(sol.cost_history, sol.cost_history[1:]))  # monotone
    assert sol.cost < 0.6 * sol.cost_history[0]
    # replaying the open-loop plan through the dynamics reproduces the planned trajectory
    x = x0
    for u in sol.U:
        x = dyn.step(x, u)
    np.testing.assert_allclose(x, sol.X[-1], atol=1e-8)
