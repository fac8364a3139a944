"""MPC on the Franka Panda model (config/mpc_panda.yaml): the site_position / limit / servo_error cost terms against
finite differences, the first-substep Jacobians, the planning model, goals, and a closed-loop reach on the exact
model with the safety filter's rate limit, by iLQR and by predictive sampling (config/mpc_panda_sampling.yaml)."""

from __future__ import annotations

import dataclasses

import mujoco
import numpy as np
import pytest

from robot_rl.control.costs import Cost, CostConfig, CostTermConfig
from robot_rl.control.dynamics import MujocoDynamics
from robot_rl.control.factory import MpcConfig, build_mpc
from robot_rl.control.mpc import HoldFallback
from robot_rl.core.config import load_config
from robot_rl.core.profile import load_profile

HOME = np.array([0.0, 0.0, 0.0, -1.57079, 0.0, 1.57079, -0.7853])


@pytest.fixture(scope="module")
def runtime():
    return build_mpc(load_config(MpcConfig, "config/mpc_panda.yaml"))


def _numeric_grad(f, z, eps=1e-6):
    g = np.zeros_like(z)
    for i in np.ndindex(z.shape):
        zp, zm = z.copy(), z.copy()
        zp[i] += eps
        zm[i] -= eps
        g[i] = (f(zp) - f(zm)) / (2 * eps)
    return g


def test_cost_gradients_match_finite_differences(runtime):
    cost = runtime.cost.with_target("ee", [0.5, 0.2, 0.3])
    rng = np.random.default_rng(0)
    T = 4
    X = np.concatenate([HOME + 0.3 * rng.standard_normal((T + 1, 7)), 2.0 * rng.standard_normal((T + 1, 7))], 1)
    X[1, 3] = -0.05  # joint4 past its limit margin (-0.1198): the position limit term is active
    U = HOME + 0.3 * rng.standard_normal((T, 7))
    exp = cost.expand(X, U)
    assert np.isclose(exp.c.sum(), float(cost.total(X, U)))
    assert np.isclose(sum(cost.terms(X, U).values()), float(cost.total(X, U)))
    assert cost.terms(X, U)["position_limits"] > 0 and cost.terms(X, U)["velocity_limits"] > 0
    gx = _numeric_grad(lambda Z: float(cost.total(Z, U)), X)
    gu = _numeric_grad(lambda Z: float(cost.total(X, Z)), U)
    np.testing.assert_allclose(exp.lx, gx, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(exp.lu, gu, rtol=1e-4, atol=1e-4)
    # Gauss-Newton Hessian of the servo term: luu = w I, lux = -w S
    w = next(t.weight for t in cost.config.terms if t.name == "servo")
    np.testing.assert_allclose(exp.luu[0], w * np.eye(7))
    np.testing.assert_allclose(exp.lux[0][:, :7], -w * np.eye(7))


def test_site_position_is_the_pinch_site_by_forward_kinematics(runtime):
    cost = runtime.cost.with_target("ee", [0.0, 0.0, 0.0])
    m = load_profile("panda").load_model()
    d = mujoco.MjData(m)
    d.qpos[:] = HOME + 0.2
    mujoco.mj_kinematics(m, d)
    x = np.concatenate([d.qpos, np.zeros(7)])
    r, _ = cost._extra_residual(cost.config.terms[0], x[None], None, jacobian=False)
    np.testing.assert_allclose(r[0], d.site("pinch").xpos, atol=1e-12)


def test_bad_cost_terms_are_named():
    term = dict(name="ee", kind="site_position", weight=1.0, indices=tuple(range(7)), site="nope")
    cfg = CostConfig(name="c", nx=14, nu=7, terms=(CostTermConfig(**term),))
    with pytest.raises(ValueError, match="needs the planner's MuJoCo model"):
        Cost(cfg)
    with pytest.raises(ValueError, match="site 'nope' is not in the model"):
        Cost(cfg, model=load_profile("panda").load_model())
    with pytest.raises(ValueError, match="term 'lim': kind 'limit' needs one lower and one upper bound per index"):
        CostTermConfig(name="lim", kind="limit", weight=1.0, indices=(0, 1), lower=(0.0,), upper=(1.0, 1.0))
    with pytest.raises(ValueError, match="term 's': kind 'servo_error' needs one state index per control index"):
        CostTermConfig(name="s", kind="servo_error", weight=1.0, indices=(0, 1), state_indices=(0,))
    with pytest.raises(ValueError, match="a servo_error term has no terminal weight"):
        CostTermConfig(name="s", kind="servo_error", weight=1.0, terminal_weight=1.0, indices=(0,),
                       state_indices=(0,))


def test_first_substep_jacobians_match_chained_at_rest(runtime):
    m = runtime.dynamics.model
    x = np.concatenate([HOME, np.zeros(7)])
    X, U = np.stack([x, x]), HOME[None] + 0.001
    A1, B1 = MujocoDynamics(m, 10, jacobian="first_substep").jacobians(X, U)
    A2, B2 = MujocoDynamics(m, 10, jacobian="chained").jacobians(X, U)
    assert np.abs(B1 - B2).max() < 0.02 * np.abs(B2).max()
    assert np.abs(A1 - A2).max() < 0.02 * np.abs(A2).max()
    with pytest.raises(ValueError, match="jacobian must be 'chained' or 'first_substep'"):
        MujocoDynamics(m, 10, jacobian="sometimes")


def test_planning_model_and_limits(runtime):
    p = runtime.profile
    dyn = runtime.dynamics
    assert dyn.model.opt.gravity.tolist() == [0.0, 0.0, 0.0]  # gravity_compensation
    assert dyn.model.opt.disableflags & mujoco.mjtDisableBit.mjDSBL_CONTACT
    assert not dyn.model.actuator_forcelimited.any()  # force_limits: false
    assert dyn.frame_skip == 10 and not dyn.coarse and dyn.jacobian == "first_substep"
    np.testing.assert_allclose(dyn.u_min, p.command_min)  # targets clamped to the joint limits
    np.testing.assert_allclose(dyn.u_max, p.command_max)
    assert runtime.controller.settings.horizon >= 30
    fb = runtime.controller.fallback
    assert isinstance(fb, HoldFallback)
    x = np.concatenate([HOME, np.zeros(7)])
    np.testing.assert_allclose(fb(x), HOME)
    np.testing.assert_allclose(fb(x + 0.1), HOME)  # latched
    fb.release()


def test_goal_errors_are_named(runtime):
    with pytest.raises(ValueError, match="goal for term 'ee': expected 3 finite values"):
        runtime.set_goal([0.5, np.nan, 0.3])
    cfg = load_config(MpcConfig, "config/mpc_panda.yaml")
    with pytest.raises(ValueError, match="goal_term 'nope' is not a term of cost"):
        build_mpc(dataclasses.replace(cfg, goal_term="nope"))
    with pytest.raises(ValueError, match="goal_term .* and env_id .* go together"):
        dataclasses.replace(cfg, env_id="")


@pytest.mark.parametrize("config", ["config/mpc_panda.yaml", "config/mpc_panda_sampling.yaml"])
def test_closed_loop_reaches_two_goals_on_the_exact_model(config):
    """iLQR and predictive sampling. Plant: the Panda MJCF with contacts, 10 x 2 ms per period, gravity exactly
    compensated, targets rate-limited like the safety filter (1.5 rad/s); synchronous replans. The replan budget is
    1 s: this tests control, not timing (bench/bench_panda_mpc.py measures that), and a loaded test machine must not
    turn replans into deadline misses and the arm into holding."""
    rt = build_mpc(load_config(MpcConfig, config, overrides=["mpc.replan_budget_s=1.0", "mpc.replan_period_s=1.0"]))
    p = rt.profile
    plant = p.load_model()
    plant.opt.gravity[:] = 0.0
    d = mujoco.MjData(plant)
    d.qpos[:] = HOME
    mujoco.mj_forward(plant, d)
    goals = [np.array([0.5, 0.2, 0.3]), np.array([0.6, -0.2, 0.5])]
    rt.set_goal(goals[0])
    rt.warm_start(np.concatenate([d.qpos, d.qvel]))
    prev, t, step = d.qpos.copy(), 0.0, p.safety.max_command_rate * p.control_period_s
    vmax = np.zeros(7)
    for g in goals:
        rt.set_goal(g)
        for _ in range(125):  # 2.5 s
            x = np.concatenate([d.qpos, d.qvel])
            rt.controller.replan(x, t)
            u = np.clip(rt.command_from_control(rt.controller.action(x, t)), prev - step, prev + step)
            prev = u
            d.ctrl[:] = u
            for _ in range(10):
                mujoco.mj_step(plant, d)
                vmax = np.maximum(vmax, np.abs(d.qvel))
            t += p.control_period_s
        err = np.linalg.norm(d.site("pinch").xpos - g)
        assert err < 0.02, f"goal {g}: end effector {d.site('pinch').xpos} is {err:.3f} m away"
        assert np.all(d.qpos >= np.array(p.command_min) - 1e-6) and np.all(d.qpos <= np.array(p.command_max) + 1e-6)
    limit = np.array([j.velocity_max for j in p.joints])
    assert np.all(vmax <= limit), f"joint speeds {vmax.round(3)} over the limits {limit}"
    print(f"max joint speeds {vmax.round(3)} rad/s (limits {limit})")


def test_first_substep_jacobians_follow_a_moving_plan(runtime):
    """Along a reaching plan (moving, servos far from rest) the raised first-substep Jacobians of the planning model
    (no force clamp) stay close to the exact chained ones."""
    rt = build_mpc(load_config(MpcConfig, "config/mpc_panda.yaml"))
    rt.set_goal([0.6, -0.2, 0.2])
    sol = rt.warm_start(np.concatenate([HOME, np.zeros(7)]))
    assert np.abs(sol.X[:, 7:]).max() > 0.3  # the plan moves
    m = rt.dynamics.model
    A1, B1 = MujocoDynamics(m, 10, jacobian="first_substep").jacobians(sol.X, sol.U)
    A2, B2 = MujocoDynamics(m, 10, jacobian="chained").jacobians(sol.X, sol.U)
    assert np.abs(B1 - B2).max() < 0.1 * np.abs(B2).max()
    assert max(np.abs(np.linalg.eigvals(a)).max() for a in A1) < 1.05


@pytest.mark.skipif(not __import__("robot_rl.control.ilqr_jit", fromlist=["x"]).AVAILABLE, reason="numba missing")
def test_compiled_clamped_backward_pass_equals_numpy():
    """The numba multi-control backward pass (control_limits clamp) = the numpy recursion; not-PD -> None."""
    from robot_rl.control import ilqr
    from robot_rl.control.costs import CostExpansion

    rng = np.random.default_rng(3)
    T, nx, nu = 6, 14, 7
    A = np.eye(nx) + 0.1 * rng.standard_normal((T, nx, nx))
    B = 0.1 * rng.standard_normal((T, nx, nu))

    def psd(n, lead):
        M = rng.standard_normal((*lead, n, n))
        return M @ np.swapaxes(M, -1, -2)

    exp = CostExpansion(c=np.zeros(T + 1), lx=rng.standard_normal((T + 1, nx)), lu=rng.standard_normal((T, nu)),
                        lxx=psd(nx, (T + 1,)), luu=psd(nu, (T,)) + np.eye(nu),
                        lux=0.1 * rng.standard_normal((T, nu, nx)))
    U, k0 = np.zeros((T, nu)), np.zeros((T, nu))
    inf = np.full(nu, np.inf)
    for mu in (0.0, 0.5):
        Kn, kn, dVn = ilqr.backward_pass(A, B, exp, U, k0, mu, -inf, inf, "clamp", jit=False)
        Kj, kj, dVj = ilqr.backward_pass(A, B, exp, U, k0, mu, -inf, inf, "clamp", jit=True)
        np.testing.assert_allclose(Kj, Kn, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(kj, kn, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(dVj, dVn, rtol=1e-8)
    bad = dataclasses.replace(exp, luu=-10.0 * np.broadcast_to(np.eye(nu), (T, nu, nu)).copy())
    assert ilqr.backward_pass(A, B, bad, U, k0, 0.0, -inf, inf, "clamp", jit=True) is None


def test_carry_mu_starts_each_replan_at_the_last_regularization(runtime):
    rt = build_mpc(load_config(MpcConfig, "config/mpc_panda.yaml"))
    assert rt.controller.planner.settings.carry_mu
    rt.set_goal([0.6, -0.2, 0.2])
    x = np.concatenate([HOME, np.zeros(7)])
    for i in range(5):
        sol = rt.controller.replan(x, 0.02 * i)
        assert rt.controller.planner._mu == (sol.mu if sol.mu <= 1e10 else 0.0)
