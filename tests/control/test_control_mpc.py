"""Receding-horizon control in closed loop (MuJoCo envs), deadline overruns, planner thread."""

import time

import numpy as np
import pytest

import robot_rl.envs as envs
from robot_rl.control import ilqr, ilqr_jit
from robot_rl.control.costs import Cost
from robot_rl.control.dynamics import MujocoDynamics, linear
from robot_rl.control.mpc import IlqrPlanner, MPCController, MPCSettings, SamplingPlanner
from robot_rl.control.sampling import SamplingSettings
from robot_rl.envs.reacher import distance as reacher_distance


@pytest.mark.parametrize("backend", ["numpy", pytest.param("numba", marks=pytest.mark.skipif(
    not ilqr_jit.AVAILABLE, reason="numba not installed"))])
@pytest.mark.parametrize("coarse", [False, True])
def test_ilqr_mpc_swings_up_and_holds_randomized_cartpole(coarse, backend):
    # coarse: the planner's model steps once per control period (timestep 0.02 s) while the plant is the env's
    # frame_skip-2 simulation at 0.01 s: the model mismatch of a coarse planning model, on top of randomization.
    # It swings up later (2.6 s with the numba backward pass, 3.5 s with numpy: the swing-up is sensitive to
    # rounding), so it gets 0.5 s more to swing up and 1 s more of sim.
    env = envs.make("robot_rl/CartpoleSwingup-v0", randomization="default", seed=0)
    sim = env.unwrapped
    _, info = env.reset(seed=0)
    rand = info["randomization"]
    assert rand["actuator_gain_scale/slide"] != 1.0 and rand["body_mass_scale/pole_1"] != 1.0  # really randomized
    # the planner uses the NOMINAL model; the plant is the randomized env (masses, friction, damping, gain, noise,
    # latency). The actuation latency is treated as measured (known), as it would be on a robot.
    nominal = MujocoDynamics(envs.make("robot_rl/CartpoleSwingup-v0").unwrapped.model, sim.frame_skip, coarse=coarse)
    assert nominal.frame_skip == (1 if coarse else sim.frame_skip) and nominal.dt == sim.control_dt
    cost = Cost.from_yaml("config/costs/cartpole_swingup.yaml")
    T = 100
    U_init = ilqr.solve(nominal, cost, sim.get_state(), 0.1 * np.random.default_rng(0).standard_normal((T, 1)),
                        ilqr.IlqrSettings(max_iterations=100, backend=backend)).U
    settings = MPCSettings(horizon=T, control_period_s=sim.control_dt, replan_budget_s=2.0,
                           delay_steps=int(rand.get("action_latency_steps", 0)))
    mpc = MPCController(IlqrPlanner(nominal, cost, ilqr.IlqrSettings(max_iterations=3, backend=backend)), settings,
                        U_init=U_init)
    cos, xs = [], []
    swing_up_s, sim_steps = (4.0, 300) if coarse else (3.5, 250)
    for k in range(sim_steps):  # 5 s (6 s) of sim
        x, t = sim.get_state(), k * sim.control_dt
        mpc.replan(x, t)
        u = mpc.action(x, t)
        assert np.all(np.abs(u) <= 10.0)
        _, _, terminated, _, info = env.step(u / 10.0)  # env action in [-1, 1] = +-10 N
        assert not info["physics_error"] and not terminated
        cos.append(np.cos(sim.get_state()[1]))
        xs.append(sim.get_state()[0])
    cos = np.asarray(cos)
    first_up = int(np.argmax(cos > 0.95))
    assert cos[first_up] > 0.95 and first_up * sim.control_dt < swing_up_s  # swung up within 3.5 s (4 s)
    assert np.all(cos[-75:] > 0.95)  # and held for the last 1.5 s
    assert np.max(np.abs(xs)) < 1.8
    assert mpc.stats()["fallback_actions"] == 0


@pytest.mark.parametrize("method", ["cem", "mppi", "predictive"])
def test_sampling_mpc_reaches_reacher_target(method):
    env = envs.make("robot_rl/Reacher2-v0", seed=0)
    sim = env.unwrapped
    env.reset(seed=0)
    dyn = MujocoDynamics(sim.model, sim.frame_skip)
    cost = Cost.from_yaml("config/costs/reacher2_reach.yaml").with_target("fingertip", sim.goal)
    planner = SamplingPlanner(dyn, cost, SamplingSettings(method=method, num_samples=64, iterations=2),
                              rng=np.random.default_rng(0))
    mpc = MPCController(planner, MPCSettings(horizon=25, control_period_s=sim.control_dt, replan_budget_s=2.0))
    def distance():  # the task's own declared distance term on the true state
        v = sim.terms.input_values(np.zeros(2))
        return float(reacher_distance(v["tip"], v["target"]))

    d0 = distance()
    dist = []
    for k in range(60):  # 1.2 s
        x, t = sim.get_state(), k * sim.control_dt
        mpc.replan(x, t)
        _, _, _, _, info = env.step(mpc.action(x, t) / 0.1)
        dist.append(distance())
    assert d0 > 0.1
    assert np.all(np.asarray(dist[-10:]) < 0.02)  # within the task's success tolerance for the last 0.2 s
    assert info["is_success"]


class DelayedPlanner:
    """Wraps a planner and sleeps after ``after`` calls: an injected deadline overrun."""

    def __init__(self, planner, delay_s, after):
        self.planner, self.dynamics, self.delay_s, self.after, self.calls = planner, planner.dynamics, delay_s, after, 0

    def optimize(self, *args, **kwargs):
        self.calls += 1
        if self.calls > self.after:
            time.sleep(self.delay_s)
        return self.planner.optimize(*args, **kwargs)


def double_integrator_planner():
    dt = 0.02
    dyn = linear([[1.0, dt], [0.0, 1.0]], [[0.5 * dt**2], [dt]], dt, u_min=-1.0, u_max=1.0)
    from robot_rl.control.costs import quadratic

    return IlqrPlanner(dyn, quadratic(np.diag([1.0, 0.1]), 0.01 * np.eye(1), np.diag([10.0, 1.0])),
                       ilqr.IlqrSettings(max_iterations=5))


def test_deadline_overrun_uses_time_shifted_plan_then_fallback():
    planner = DelayedPlanner(double_integrator_planner(), delay_s=0.25, after=1)
    settings = MPCSettings(horizon=50, control_period_s=0.02, replan_budget_s=0.2, replan_period_s=10.0,
                           max_missed_deadlines=2)
    mpc = MPCController(planner, settings, fallback=lambda x: np.array([0.5]))
    x = np.array([1.0, 0.0])
    mpc.replan(x, 0.0)  # in time
    plan = mpc.plan
    assert mpc.stats()["deadline_misses"] == 0
    u0 = mpc.action(plan.X[0], 0.0)
    np.testing.assert_allclose(u0, plan.U[0])
    # miss 1: the late plan is dropped, the previous plan is used, indexed by time (step 3 at t = 0.06 s)
    mpc.replan(np.array([0.3, 0.2]), 0.06)
    assert mpc.plan is plan and mpc.stats()["deadline_misses"] == 1
    np.testing.assert_allclose(mpc.action(plan.X[3], 0.06), plan.U[3])
    x4 = plan.X[4] + np.array([0.01, 0.0])
    np.testing.assert_allclose(mpc.action(x4, 0.08), np.clip(plan.U[4] + plan.K[4] @ (x4 - plan.X[4]), -1, 1))
    # miss 2 = max_missed_deadlines: fallback command
    mpc.replan(np.array([0.3, 0.2]), 0.1)
    np.testing.assert_allclose(mpc.action(plan.X[5], 0.1), [0.5])
    stats = mpc.stats()
    assert stats["deadline_misses"] == 2 and stats["fallback_actions"] == 1
    assert stats["solve_ms_max"] >= 250.0 and stats["solve_ms_p50"] is not None
    # a plan in time again restores normal operation
    planner.delay_s = 0.0
    mpc.replan(np.array([0.3, 0.2]), 0.12)
    assert mpc.stats()["consecutive_misses"] == 0 and mpc.plan is not plan
    np.testing.assert_allclose(mpc.action(mpc.plan.X[0], 0.12), np.clip(mpc.plan.U[0], -1, 1))
    # beyond the plan's horizon: fallback
    np.testing.assert_allclose(mpc.action(np.zeros(2), 0.12 + 50 * 0.02), [0.5])


def test_planner_thread_updates_plan_and_hung_planner_falls_back():
    planner = DelayedPlanner(double_integrator_planner(), delay_s=0.5, after=3)
    settings = MPCSettings(horizon=50, control_period_s=0.02, replan_budget_s=0.2, replan_period_s=0.02,
                           max_missed_deadlines=2)
    mpc = MPCController(planner, settings)
    mpc.start()
    try:
        x = np.array([1.0, 0.0])
        t0 = time.perf_counter()
        for _ in range(3):
            mpc.set_state(x, time.perf_counter() - t0)
            deadline = time.perf_counter() + 2.0
            n = mpc.stats()["replans"]
            while mpc.stats()["replans"] == n and time.perf_counter() < deadline:
                time.sleep(0.002)
        assert mpc.stats()["replans"] == 3 and mpc.plan is not None
        u = mpc.action(x, time.perf_counter() - t0)
        assert u[0] < 0  # pushes toward the origin
        # the 4th replan hangs for 0.5 s: once the plan is older than (K+1) replan periods, the fallback (0) acts
        mpc.set_state(x, time.perf_counter() - t0)
        time.sleep(0.1)
        np.testing.assert_allclose(mpc.action(x, time.perf_counter() - t0), [0.0])
    finally:
        mpc.stop()
    assert mpc.stats()["last_error"] is None


def test_delay_compensation_steps_its_own_model_copy_beside_the_planner_thread():
    """Delay compensation predicts in both threads (replan in the planner's, action in the caller's): each on its
    own MjData. When both stepped the planner's, mpc_node with ``mpc.delay_steps > 0`` died of a segmentation fault
    within seconds."""
    sim = envs.make("robot_rl/CartpoleSwingup-v0").unwrapped
    dyn = MujocoDynamics(sim.model, sim.frame_skip)
    settings = MPCSettings(horizon=50, control_period_s=sim.control_dt, replan_budget_s=0.02, replan_period_s=0.001,
                           delay_steps=3)
    mpc = MPCController(IlqrPlanner(dyn, Cost.from_yaml("config/costs/cartpole_swingup.yaml"),
                                    ilqr.IlqrSettings(max_iterations=2)), settings)
    assert mpc._act_dynamics.data is not dyn.data and mpc._act_dynamics.model is dyn.model
    x = sim.get_state()
    mpc.start()
    try:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 1.0:  # the control thread predicts while the planner thread replans
            t = time.perf_counter() - t0
            mpc.set_state(x, t)
            assert np.all(np.isfinite(mpc.action(x, t)))
    finally:
        mpc.stop()
    stats = mpc.stats()
    assert stats["last_error"] is None and stats["replans"] > 5, stats


def test_planner_thread_exception_is_reported_and_falls_back():
    class Broken:
        dynamics = double_integrator_planner().dynamics

        def optimize(self, *a, **k):
            raise RuntimeError("planner exploded")

    mpc = MPCController(Broken(), MPCSettings(horizon=10, control_period_s=0.02))
    mpc.start()
    mpc.set_state(np.zeros(2), 0.0)
    deadline = time.perf_counter() + 2.0
    while mpc.stats()["last_error"] is None and time.perf_counter() < deadline:
        time.sleep(0.005)
    mpc.stop()
    assert "planner exploded" in mpc.stats()["last_error"]
    np.testing.assert_allclose(mpc.action(np.zeros(2), 0.0), [0.0])


def test_mpc_settings_validation():
    with pytest.raises(ValueError, match="control_period_s"):
        MPCController(double_integrator_planner(), MPCSettings(control_period_s=0.05))
    with pytest.raises(ValueError):
        MPCSettings(max_missed_deadlines=0)
