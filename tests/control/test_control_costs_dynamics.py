"""Costs (analytic derivatives, YAML), dynamics (MuJoCo Jacobians, rollouts, divergence), randomized models."""

import copy

import mujoco
import numpy as np
import pytest

from robot_rl.control.costs import Cost, CostConfig, CostTermConfig
from robot_rl.control.dynamics import CallableDynamics, MujocoDynamics, fd_jacobians
from robot_rl.control.randomize import perturbed_models
from robot_rl.core import mujoco_jit
from robot_rl.core.assets import find_asset
from robot_rl.core.config import ConfigError, from_dict


def cartpole_model():
    return mujoco.MjModel.from_xml_path(str(find_asset("sim/cartpole/cartpole.xml")))


def all_kinds_cost():
    terms = (
        CostTermConfig("ang", "angle", 2.0, 5.0, indices=(1,), target=(0.3,)),
        CostTermConfig("st", "state", 0.5, 1.5, indices=(0, 3), target=(0.1, -0.2)),
        CostTermConfig("reach", "planar_reach", 3.0, 7.0, indices=(0, 1), target=(0.05, 0.1), link_lengths=(0.1, 0.11)),
        CostTermConfig("ctl", "control", 0.3, indices=(1,), target=(0.2,)),
    )
    return Cost(CostConfig("test", 4, 2, terms))


def test_cost_gradient_matches_finite_differences_and_hessian_is_gauss_newton():
    cost = all_kinds_cost()
    rng = np.random.default_rng(0)
    T = 3
    X, U = rng.standard_normal((T + 1, 4)), rng.standard_normal((T, 2))
    e = cost.expand(X, U)
    np.testing.assert_allclose(e.c.sum(), cost.total(X, U), rtol=1e-12)
    h = 1e-6
    for t in range(T + 1):
        for i in range(4):
            Xp, Xm = X.copy(), X.copy()
            Xp[t, i] += h
            Xm[t, i] -= h
            np.testing.assert_allclose((cost.total(Xp, U) - cost.total(Xm, U)) / (2 * h), e.lx[t, i], atol=1e-6)
    for t in range(T):
        for i in range(2):
            Up, Um = U.copy(), U.copy()
            Up[t, i] += h
            Um[t, i] -= h
            np.testing.assert_allclose((cost.total(X, Up) - cost.total(X, Um)) / (2 * h), e.lu[t, i], atol=1e-6)
    # Gauss-Newton Hessians are PSD; control term exact: weight * S'S
    assert np.all(np.linalg.eigvalsh(e.lxx) > -1e-12)
    np.testing.assert_allclose(e.luu[0], np.diag([0.0, 0.3]))


def test_angle_residual_is_one_minus_cos_and_planar_reach_is_forward_kinematics():
    cost = all_kinds_cost()
    terms = cost.terms(np.array([[0.0, 0.3 + np.pi, 0, 0], [0.0, 0.3, 0.0, 0.0]]), np.zeros((1, 2)))
    assert terms["ang"] == pytest.approx(2.0 * (1 - np.cos(np.pi)))  # running weight 2 at hanging, 0 at target
    # reacher geometry from the MJCF: fingertip site position equals the planar_reach forward kinematics
    m = mujoco.MjModel.from_xml_path(str(find_asset("sim/reacher/reacher.xml")))
    d = mujoco.MjData(m)
    d.qpos[:] = [0.7, -1.2]
    mujoco.mj_kinematics(m, d)
    tip = d.site("fingertip").xpos[:2]
    reach = Cost.from_yaml("config/costs/reacher2_reach.yaml").with_target("fingertip", tip)
    x = np.array([[0.7, -1.2, 0.0, 0.0]] * 2)
    assert reach.terms(x, np.zeros((1, 2)))["fingertip"] == pytest.approx(0.0, abs=1e-20)


def test_cost_yaml_loads_and_errors_name_the_key():
    cost = Cost.from_yaml("config/costs/cartpole_swingup.yaml")
    assert [t.name for t in cost.config.terms] == ["upright", "centered", "rail", "velocity", "control"]
    raw = {"name": "c", "nx": 2, "nu": 1, "terms": [{"name": "a", "kind": "state", "indices": [0], "weight": 1.0,
                                                     "wieght": 2.0}]}
    with pytest.raises(ConfigError, match="wieght"):
        from_dict(CostConfig, raw)
    raw["terms"] = [{"name": "a", "kind": "state", "indices": [5], "weight": 1.0}]
    with pytest.raises(ConfigError, match="index out of range"):
        from_dict(CostConfig, raw)
    with pytest.raises(KeyError, match="no term 'nope'"):
        cost.with_target("nope", [0.0])


def test_mujoco_jacobians_chain_frame_skip():
    dyn = MujocoDynamics(cartpole_model(), frame_skip=2)
    X = np.array([[0.1, 2.5, 0.3, -1.0], [0.0, 0.4, -0.2, 0.5]])
    U = np.array([[3.0], [-2.0]])
    A, B = dyn.jacobians(np.concatenate([X, X[-1:]]), U)

    def f(Xb, Ub):
        return np.stack([dyn.step(x, u) for x, u in zip(Xb, Ub)])

    A_fd, B_fd = fd_jacobians(f, X, U, 1e-6)
    np.testing.assert_allclose(A, A_fd, atol=2e-4)
    np.testing.assert_allclose(B, B_fd, atol=2e-4)
    assert np.abs(B).max() > 1e-3  # the control acts


def test_mujoco_rollout_matches_step_and_scores_every_scenario():
    m = cartpole_model()
    models = perturbed_models(m, 3, np.random.default_rng(0))
    dyn = MujocoDynamics(m, frame_skip=2, scenario_models=models)
    x0 = np.array([0.0, np.pi - 0.1, 0.0, 0.0])
    U = np.random.default_rng(1).uniform(-10, 10, (4, 20, 1))
    X = dyn.rollout(x0, U)
    assert X.shape == (3, 4, 21, 4)
    x = x0
    for t in range(20):
        x = dyn.step(x, U[2, t])
    np.testing.assert_allclose(X[0, 2, -1], x, atol=1e-9)  # scenario 0 is the nominal model
    assert np.abs(X[1] - X[0]).max() > 1e-4 and np.abs(X[2] - X[1]).max() > 1e-4
    # the nominal model is untouched by the randomization of its copies
    assert m.body_mass[1] == cartpole_model().body_mass[1] and models[1].body_mass[1] != m.body_mass[1]


def test_diverging_rollout_gets_infinite_cost():
    m = cartpole_model()
    m_bad = copy.deepcopy(m)
    m_bad.actuator_ctrllimited[:] = 0  # let an absurd force through: MuJoCo warns and resets
    cost = Cost.from_yaml("config/costs/cartpole_swingup.yaml")
    dyn = MujocoDynamics(m_bad, frame_skip=2)
    U = np.zeros((3, 10, 1))
    U[1, 4] = 1e300
    X = dyn.rollout(np.zeros(4), U)
    c = cost.total(X, U[None])[0]
    assert np.isfinite(c[0]) and np.isfinite(c[2]) and c[1] == np.inf
    assert np.all(np.isnan(X[0, 1, 5:])) and np.all(np.isfinite(X[0, 1, :5]))
    assert np.all(np.isnan(dyn.step(np.zeros(4), np.array([1e300]))))
    # a learned / callable model that blows up is caught the same way
    lin = CallableDynamics(lambda X, U: 1e3 * X + U, 4, 1, 0.02)
    Xl = lin.rollout(np.ones(4), np.zeros((2, 5, 1)))
    assert np.all(cost.total(Xl, np.zeros((1, 2, 5, 1))) == np.inf)


def test_mujoco_dynamics_refuses_rk4():
    m = cartpole_model()
    m.opt.integrator = mujoco.mjtIntegrator.mjINT_RK4
    with pytest.raises(ValueError, match="RK4"):
        MujocoDynamics(m)


def test_expand_and_total_equal_the_residual_jacobian_reference():
    # the stacked fast path (state / angle / control terms merged) against J'r and J'J from each term's residual
    from robot_rl.control.costs import _residual

    cost = all_kinds_cost()
    rng = np.random.default_rng(4)
    T = 6
    X, U = rng.standard_normal((T + 1, 4)), rng.standard_normal((T, 2))
    e = cost.expand(X, U)
    lx, lxx, c = np.zeros((T + 1, 4)), np.zeros((T + 1, 4, 4)), np.zeros(T + 1)
    for t in cost.state_terms:
        r, J = _residual(t, X, 4)
        w = np.r_[np.full(T, t.weight), t.terminal_weight]
        c += w * 0.5 * np.sum(r * r, -1)
        lx += w[:, None] * np.einsum("tmi,tm->ti", J, r)
        lxx += w[:, None, None] * np.einsum("tmi,tmj->tij", J, J)
    (ctl,) = cost.control_terms
    r, J = _residual(ctl, U, 2)
    c[:-1] += ctl.weight * 0.5 * np.sum(r * r, -1)
    np.testing.assert_allclose(e.lx, lx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(e.lxx, lxx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(e.c, c, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(e.lu, ctl.weight * np.einsum("tmi,tm->ti", J, r), rtol=1e-12, atol=1e-12)
    # batched total over leading dims (sampling planners: X [M, N, T+1, nx], U [1, N, T, nu]) = sum of the terms
    Xb, Ub = rng.standard_normal((3, 5, T + 1, 4)), rng.standard_normal((1, 5, T, 2))
    Xb[1, 2, 4, 0] = np.nan
    tot = cost.total(Xb, Ub)
    ref = sum(cost.terms(Xb, Ub).values())
    assert tot.shape == (3, 5) and tot[1, 2] == np.inf
    ok = np.isfinite(ref)
    np.testing.assert_allclose(tot[ok], ref[ok], rtol=1e-12)


def test_coarse_planning_model_has_one_physics_step_per_control_period():
    m = cartpole_model()
    exact = MujocoDynamics(m, frame_skip=2)
    models = perturbed_models(m, 2, np.random.default_rng(0))
    coarse = MujocoDynamics(m, frame_skip=2, coarse=True, scenario_models=models)
    assert coarse.dt == exact.dt == 0.02 and coarse.frame_skip == 1
    assert coarse.model.opt.timestep == 0.02 and m.opt.timestep == 0.01  # the given model is not modified
    assert [s.opt.timestep for s in coarse.scenario_models] == [0.02, 0.02] and models[1].opt.timestep == 0.01
    x, u = np.array([0.1, 2.5, 0.3, -1.0]), np.array([3.0])
    d = mujoco.MjData(coarse.model)
    d.qpos[:], d.qvel[:], d.ctrl[:] = x[:2], x[2:], u
    mujoco.mj_step(coarse.model, d)
    np.testing.assert_allclose(coarse.step(x, u), np.r_[d.qpos, d.qvel], atol=1e-12)
    X0 = np.stack([x, x])
    np.testing.assert_allclose(coarse.rollout(x, u[None, None])[0, 0, 1], coarse.step(x, u), atol=1e-12)
    # a different discretization of the same dynamics: close to, but not equal to, the exact substeps
    A, B = coarse.jacobians(X0, u[None])
    Ae, Be = exact.jacobians(X0, u[None])
    assert 1e-6 < np.abs(A - Ae).max() < 0.05 and np.abs(B - Be).max() < 0.01
    np.testing.assert_allclose(coarse.step(x, u), exact.step(x, u), atol=0.02)


@pytest.mark.parametrize("backend", ["python", "numba"])
@pytest.mark.parametrize("asset,frame_skip", [("sim/cartpole/cartpole.xml", 2), ("sim/reacher/reacher.xml", 2)])
def test_closed_loop_forward_pass_equals_stepping_the_policy(asset, frame_skip, backend):
    # the in-place forward pass (nu = 1 scalar path for the cart-pole, array path for the 2-motor reacher)
    m = mujoco.MjModel.from_xml_path(str(find_asset(asset)))
    dyn = MujocoDynamics(m, frame_skip=frame_skip, backend=backend)
    rng = np.random.default_rng(0)
    T, nx, nu = 15, dyn.nx, dyn.nu
    x0 = 0.3 * rng.standard_normal(nx)
    X = 0.3 * rng.standard_normal((T + 1, nx))
    U = dyn.u_max * rng.uniform(-1.5, 1.5, (T, nu))
    K, k = dyn.u_max[:, None] * rng.standard_normal((T, nu, nx)), dyn.u_max * rng.standard_normal((T, nu))
    Xn, Un = dyn.closed_loop(x0, X, U, K, k, 0.5)
    x = x0
    for t in range(T):
        u = np.clip(U[t] + 0.5 * k[t] + K[t] @ (x - X[t]), dyn.u_min, dyn.u_max)
        np.testing.assert_allclose(Un[t], u, atol=1e-12)
        x = dyn.step(x, u)
        np.testing.assert_allclose(Xn[t + 1], x, atol=1e-12)
    assert np.any(np.abs(Un) == dyn.u_max)  # the clip was exercised


@pytest.mark.parametrize("backend", ["python", "numba"])
def test_closed_loop_forward_pass_marks_divergence(backend):
    m = cartpole_model()
    m.actuator_ctrllimited[:] = 0  # an absurd force gets through: MuJoCo warns (bad control / acceleration)
    dyn = MujocoDynamics(m, frame_skip=2, backend=backend)
    cost = Cost.from_yaml("config/costs/cartpole_swingup.yaml")
    T = 10
    X, U = np.zeros((T + 1, 4)), np.zeros((T, 1))
    K, k = np.zeros((T, 1, 4)), np.zeros((T, 1))
    for bad in (1e300, 1e9):  # 1e300: MuJoCo zeroes the control; 1e9 N: the state blows up
        k[4] = bad
        Xn, Un = dyn.closed_loop(np.zeros(4), X, U, K, k, 1.0)
        assert np.all(np.isfinite(Xn[:5])) and np.all(np.isnan(Xn[5:])), (bad, Xn)
        assert cost.total(Xn, Un) == np.inf


@pytest.mark.parametrize("asset,frame_skip,exact", [("sim/cartpole/cartpole.xml", 2, True),
                                                    ("sim/cartpole/cartpole.xml", 1, True),
                                                    ("sim/reacher/reacher.xml", 2, False)])
def test_compiled_mujoco_loops_equal_the_python_loops(asset, frame_skip, exact):
    # numba is in requirements.txt: the compiled loops must be available where the tests run
    assert mujoco_jit.AVAILABLE, mujoco_jit.unavailable_reason()
    m = mujoco.MjModel.from_xml_path(str(find_asset(asset)))
    py, jit = MujocoDynamics(m, frame_skip, backend="python"), MujocoDynamics(m, frame_skip)
    assert (py.backend, jit.backend) == ("python", "numba")
    rng = np.random.default_rng(1)
    T, nx, nu = 40, py.nx, py.nu
    X, U = 0.3 * rng.standard_normal((T + 1, nx)), py.u_max * rng.uniform(-1.5, 1.5, (T, nu))
    K, k = py.u_max[:, None] * rng.standard_normal((T, nu, nx)), py.u_max * rng.standard_normal((T, nu))
    for a, b in zip(py.jacobians(X, U), jit.jacobians(X, U), strict=True):
        np.testing.assert_array_equal(a, b)  # same mjd_transitionFD calls on the same states
    (Xp, Up), (Xj, Uj) = py.closed_loop(X[0], X, U, K, k, 0.7), jit.closed_loop(X[0], X, U, K, k, 0.7)
    if exact:  # one actuator: the feedback sum in the same order
        np.testing.assert_array_equal(Xp, Xj)
        np.testing.assert_array_equal(Up, Uj)
    else:
        np.testing.assert_allclose(Xj, Xp, rtol=0, atol=1e-10)
        np.testing.assert_allclose(Uj, Up, rtol=0, atol=1e-10)
    assert not np.array_equal(Xp[1:], np.broadcast_to(Xp[0], Xp[1:].shape))  # the loop really stepped


def test_mujoco_dynamics_backend_is_validated():
    with pytest.raises(ValueError, match="backend must be 'auto', 'python' or 'numba', got 'cuda'"):
        MujocoDynamics(cartpole_model(), backend="cuda")


@pytest.mark.parametrize("backend", ["python", "numba"])
def test_mujoco_dynamics_loops_refuse_wrong_shapes(backend):
    # the compiled loops do not bounds-check: a wrong shape must be refused before it reaches them (a U wider than
    # nu would otherwise write past d.ctrl into the rest of MjData)
    dyn = MujocoDynamics(cartpole_model(), 2, backend=backend)
    T = 5
    X, U, K, k = np.zeros((T + 1, 4)), np.zeros((T, 1)), np.zeros((T, 1, 4)), np.zeros((T, 1))
    msg = r"jacobians: expected X \[>=5, 4\] and U \[T, 1\], got \(6, 4\) and \(5, 12\)"
    with pytest.raises(ValueError, match=msg):
        dyn.jacobians(X, np.zeros((T, 12)))
    with pytest.raises(ValueError, match="jacobians: expected"):
        dyn.jacobians(X[:3], U)
    with pytest.raises(ValueError, match=r"closed_loop: expected x0 \[4\].*got \(4,\), \(6, 4\), \(5, 1\), \(5, 1\), "
                                         r"\(5, 3, 4\)"):
        dyn.closed_loop(np.zeros(4), X, U, np.zeros((T, 3, 4)), k, 1.0)
    with pytest.raises(ValueError, match="closed_loop: expected"):
        dyn.closed_loop(np.zeros(4), X, U, K, np.zeros((T, 2)), 1.0)
    np.testing.assert_array_equal(dyn.data.qfrc_applied, 0.0)  # nothing was written anywhere


def test_auto_backend_falls_back_to_python_loops_when_the_kernels_fail(monkeypatch):
    def broken():
        raise RuntimeError("robot_rl.core.mujoco_jit: building the kernels failed: ImportError: test")

    monkeypatch.setattr(mujoco_jit, "kernels", broken)
    X, U = np.zeros((4, 4)), np.zeros((3, 1))
    auto = MujocoDynamics(cartpole_model(), 2)
    with pytest.warns(RuntimeWarning, match="compiled loops unavailable"):
        A, B = auto.jacobians(X, U)
    assert auto.backend == "python"
    ref = MujocoDynamics(cartpole_model(), 2, backend="python").jacobians(X, U)
    np.testing.assert_array_equal(A, ref[0])
    np.testing.assert_array_equal(B, ref[1])
    with pytest.raises(RuntimeError, match="building the kernels failed"):
        MujocoDynamics(cartpole_model(), 2, backend="numba").jacobians(X, U)
