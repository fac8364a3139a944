"""LQR closed forms and iLQR against LQR on linear-quadratic problems."""

import dataclasses

import numpy as np
import pytest

from robot_rl.control import ilqr, ilqr_jit, lqr
from robot_rl.control.costs import CostExpansion, quadratic
from robot_rl.control.dynamics import linear


def double_integrator(dt=0.05):
    A = np.array([[1.0, dt], [0.0, 1.0]])
    B = np.array([[0.5 * dt**2], [dt]])
    return A, B


def random_problem(seed, nx=4, nu=2):
    rng = np.random.default_rng(seed)
    A = np.eye(nx) + 0.1 * rng.standard_normal((nx, nx))
    B = rng.standard_normal((nx, nu))
    M = rng.standard_normal((nx, nx))
    Q = M @ M.T + 0.1 * np.eye(nx)
    R = np.diag(rng.uniform(0.1, 1.0, nu))
    return A, B, Q, R


def test_double_integrator_hand_computed_one_step():
    # T = 1: K = -(R + B'Qf B)^-1 B'Qf A, worked by hand for dt = 1, Qf = I, R = 1:
    # B = [0.5, 1]', B'B = 1.25, B'A = [0.5, 1.5] -> K = -[0.5, 1.5] / 2.25
    A, B = double_integrator(1.0)
    sol = lqr.finite_horizon(A, B, np.zeros((2, 2)), np.eye(1), np.eye(2), horizon=1)
    np.testing.assert_allclose(sol.K[0], -np.array([[0.5, 1.5]]) / 2.25, rtol=1e-12)


def test_finite_horizon_converges_to_infinite_horizon():
    A, B, Q, R = random_problem(0)
    K_inf, P_inf = lqr.infinite_horizon(A, B, Q, R)
    sol = lqr.finite_horizon(A, B, Q, R, Q, horizon=400)
    np.testing.assert_allclose(sol.K[0], K_inf, atol=1e-8)
    np.testing.assert_allclose(sol.P[0], P_inf, rtol=1e-8)
    assert lqr.closed_loop_is_stable(A, B, K_inf)
    # a short horizon has visibly different gains: the test above is not vacuous
    short = lqr.finite_horizon(A, B, Q, R, np.zeros_like(Q), horizon=2)
    assert np.abs(short.K[0] - K_inf).max() > 1e-3


def test_dare_failure_is_named():
    A = np.diag([2.0, 0.5])
    B = np.array([[0.0], [1.0]])  # unstable mode is uncontrollable
    with pytest.raises(ValueError, match="Riccati"):
        lqr.infinite_horizon(A, B, np.eye(2), np.eye(1))


@pytest.mark.parametrize("seed,nu", [(0, 2), (1, 2), (2, 1), (3, 1)])
@pytest.mark.parametrize("limits", ["clamp", "boxqp"])
def test_ilqr_equals_lqr_on_linear_quadratic(seed, nu, limits):
    # nu = 1 exercises the one-actuator backward pass; without limits boxqp must equal the unconstrained step
    A, B, Q, R = random_problem(seed, nu=nu)
    Qf = 2.0 * Q
    T = 30
    x0 = np.random.default_rng(seed + 10).standard_normal(4)
    ref = lqr.finite_horizon(A, B, Q, R, Qf, horizon=T)
    sol = ilqr.solve(linear(A, B, 0.1), quadratic(Q, R, Qf), x0, np.zeros((T, nu)),
                     ilqr.IlqrSettings(control_limits=limits))
    assert sol.converged, sol.reason
    assert sol.iterations <= 3  # one Newton step solves an LQ problem exactly
    np.testing.assert_allclose(sol.cost, ref.cost(x0), rtol=1e-8)
    np.testing.assert_allclose(sol.K, ref.K, rtol=1e-6, atol=1e-9)
    # the open-loop controls equal the LQR policy along the optimal trajectory
    np.testing.assert_allclose(sol.U, np.einsum("tij,tj->ti", ref.K, sol.X[:-1]), atol=1e-8)


def test_ilqr_boxqp_respects_limits_and_zeroes_clamped_gains():
    A, B = double_integrator(0.05)
    T = 60
    dyn = linear(A, B, 0.05, u_min=-1.0, u_max=1.0)
    cost = quadratic(np.diag([10.0, 1.0]), 0.01 * np.eye(1), np.diag([100.0, 10.0]))
    sol = ilqr.solve(dyn, cost, np.array([2.0, 0.0]), np.zeros((T, 1)))
    assert sol.converged, sol.reason
    assert np.all(np.abs(sol.U) <= 1.0 + 1e-12)
    saturated = np.abs(sol.U[:, 0]) > 1.0 - 1e-9
    assert saturated.sum() >= 5  # the limit is active: a 2 m move in 3 s at 1 m/s^2 must saturate
    np.testing.assert_array_equal(sol.K[saturated], 0.0)
    unconstrained = ilqr.solve(linear(A, B, 0.05), cost, np.array([2.0, 0.0]), np.zeros((T, 1)))
    assert unconstrained.cost < sol.cost and np.abs(unconstrained.U).max() > 1.0


def test_box_qp_matches_bruteforce():
    rng = np.random.default_rng(3)
    M = rng.standard_normal((3, 3))
    H = M @ M.T + 0.5 * np.eye(3)
    g = rng.standard_normal(3) * 3
    lo, hi = -0.3 * np.ones(3), 0.4 * np.ones(3)
    x, free, L = ilqr.box_qp(H, g, lo, hi, np.zeros(3))
    grid = np.stack(np.meshgrid(*[np.linspace(-0.3, 0.4, 71)] * 3), -1).reshape(-1, 3)
    vals = 0.5 * np.einsum("ni,ij,nj->n", grid, H, grid) + grid @ g
    f = 0.5 * x @ H @ x + g @ x
    assert f <= vals.min() + 1e-9
    assert L is not None


def textbook_backward_pass(A, B, exp, U, mu, u_min, u_max):
    """Tassa 2012 eq. 11 with the Tassa 2014 clamping for one control, written out per step (reference)."""
    T, nx, _ = B.shape
    Vx, Vxx = exp.lx[-1], exp.lxx[-1]
    K, k, dV = np.zeros((T, 1, nx)), np.zeros((T, 1)), np.zeros(2)
    for t in range(T - 1, -1, -1):
        Qx = exp.lx[t] + A[t].T @ Vx
        Qu = exp.lu[t] + B[t].T @ Vx
        Qxx = exp.lxx[t] + A[t].T @ Vxx @ A[t]
        Quu = exp.luu[t] + B[t].T @ Vxx @ B[t]
        Qux = exp.lux[t] + B[t].T @ Vxx @ A[t]
        kt = -Qu / (Quu[0, 0] + mu)
        if u_min - U[t, 0] < kt[0] < u_max - U[t, 0]:
            Kt = -Qux / (Quu[0, 0] + mu)
        else:
            kt, Kt = np.clip(kt, u_min - U[t], u_max - U[t]), np.zeros((1, nx))
        K[t], k[t] = Kt, kt
        dV += [kt @ Qu, 0.5 * kt @ Quu @ kt]
        Vx = Qx + Kt.T @ Quu @ kt + Kt.T @ Qu + Qux.T @ kt
        Vxx = Qxx + Kt.T @ Quu @ Kt + Kt.T @ Qux + Qux.T @ Kt
        Vxx = 0.5 * (Vxx + Vxx.T)
    return K, k, dV


JIT = [False, pytest.param(True, marks=pytest.mark.skipif(not ilqr_jit.AVAILABLE, reason="numba not installed"))]


@pytest.mark.parametrize("jit", JIT)
@pytest.mark.parametrize("mu", [0.0, 0.7])
def test_one_control_backward_pass_matches_textbook_recursion(mu, jit):
    rng = np.random.default_rng(5)
    T, nx = 40, 4
    A = np.eye(nx) + 0.1 * rng.standard_normal((T, nx, nx))
    B = rng.standard_normal((T, nx, 1))
    M = rng.standard_normal((T + 1, nx, nx))
    exp = CostExpansion(c=np.zeros(T + 1), lx=rng.standard_normal((T + 1, nx)), lu=3.0 * rng.standard_normal((T, 1)),
                        lxx=M @ M.transpose(0, 2, 1) + 0.1 * np.eye(nx), luu=rng.uniform(0.1, 1.0, (T, 1, 1)),
                        lux=0.3 * rng.standard_normal((T, 1, nx)))
    U = rng.uniform(-0.5, 0.5, (T, 1))
    K, k, dV = ilqr.backward_pass(A, B, exp, U, np.zeros((T, 1)), mu, np.array([-0.7]), np.array([0.7]), "boxqp",
                                  jit=jit)
    Kr, kr, dVr = textbook_backward_pass(A, B, exp, U, mu, -0.7, 0.7)
    clamped = np.all(K == 0, axis=(1, 2))
    assert 3 <= clamped.sum() <= T - 3  # both branches are exercised
    np.testing.assert_allclose(k, kr, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(K, Kr, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(dV, dVr, rtol=1e-9)
    # not positive definite: Q_uu + mu <= 0 is reported as a failed pass (None), not a garbage step
    bad = dataclasses.replace(exp, luu=-np.abs(exp.luu) - 1e6)
    assert ilqr.backward_pass(A, B, bad, U, np.zeros((T, 1)), mu, np.array([-0.7]), np.array([0.7]), "boxqp",
                              jit=jit) is None


@pytest.mark.parametrize("backend", ["numpy", pytest.param("numba", marks=pytest.mark.skipif(
    not ilqr_jit.AVAILABLE, reason="numba not installed"))])
def test_backends_give_the_same_constrained_solve(backend):
    A, B = double_integrator(0.05)
    dyn = linear(A, B, 0.05, u_min=-1.0, u_max=1.0)
    cost = quadratic(np.diag([10.0, 1.0]), 0.01 * np.eye(1), np.diag([100.0, 10.0]))
    settings = ilqr.IlqrSettings(backend=backend)
    assert settings.jit == (backend == "numba")
    sol = ilqr.solve(dyn, cost, np.array([2.0, 0.0]), np.zeros((60, 1)), settings)
    ref = ilqr.solve(dyn, cost, np.array([2.0, 0.0]), np.zeros((60, 1)), ilqr.IlqrSettings(backend="numpy"))
    assert sol.converged and sol.iterations == ref.iterations
    np.testing.assert_allclose(sol.U, ref.U, atol=1e-9)
    np.testing.assert_allclose(sol.K, ref.K, atol=1e-9)


def test_ilqr_falls_back_to_numpy_when_the_kernel_fails_to_build(monkeypatch):
    """A numba that cannot build the kernel: one RuntimeWarning naming the cause, then the numpy recursion (same
    solution as backend="numpy")."""
    import sys
    import types

    broken = types.ModuleType("numba")

    def njit(**_):
        def wrap(fn):
            def call(*a):
                raise TypeError("LLVM says no")
            return call
        return wrap

    broken.njit = njit
    monkeypatch.setitem(sys.modules, "numba", broken)
    monkeypatch.setattr(ilqr_jit, "_compiled", None)
    monkeypatch.setattr(ilqr_jit, "_reason", None)
    monkeypatch.setattr(ilqr_jit, "_warned", False)
    monkeypatch.setattr(ilqr_jit, "AVAILABLE", True)
    rng = np.random.default_rng(1)
    T, nx = 10, 4
    A = np.eye(nx) + 0.1 * rng.standard_normal((T, nx, nx))
    B = rng.standard_normal((T, nx, 1))
    M = rng.standard_normal((T + 1, nx, nx))
    exp = CostExpansion(c=np.zeros(T + 1), lx=rng.standard_normal((T + 1, nx)), lu=rng.standard_normal((T, 1)),
                        lxx=M @ M.transpose(0, 2, 1) + 0.1 * np.eye(nx), luu=rng.uniform(0.1, 1.0, (T, 1, 1)),
                        lux=0.1 * rng.standard_normal((T, 1, nx)))
    U, lo, hi = np.zeros((T, 1)), -np.ones(1), np.ones(1)
    with pytest.warns(RuntimeWarning, match="LLVM says no.*numpy instead"):
        got = ilqr.backward_pass(A, B, exp, U, None, 0.1, lo, hi, "boxqp", jit=True)
    assert not ilqr_jit.AVAILABLE and "LLVM says no" in ilqr_jit.unavailable_reason()
    want = ilqr.backward_pass(A, B, exp, U, None, 0.1, lo, hi, "boxqp", jit=False)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_ilqr_stops_before_an_iteration_that_would_overrun_the_deadline(monkeypatch):
    """Anytime: iterations of 10 ms (fake clock advanced by the derivative call) and a 35 ms budget: 3 run, the solve
    ends within its budget; without a deadline all run."""

    class Clock:
        now = 50.0

        def perf_counter(self):
            return self.now

    clock = Clock()
    A, B = double_integrator()
    Q, R, Qf = np.eye(2), 0.1 * np.eye(1), 10.0 * np.eye(2)
    dyn = linear(A, B, 0.05)
    jac = dyn.jacobians

    def timed_jacobians(X, U):
        clock.now += 0.010
        return jac(X, U)

    dyn.jacobians = timed_jacobians
    monkeypatch.setattr(ilqr, "time", clock)
    settings = ilqr.IlqrSettings(max_iterations=8, tol_rel_cost=0.0, tol_grad=0.0)
    sol = ilqr.solve(dyn, quadratic(Q, R, Qf), np.ones(A.shape[0]), np.zeros((10, 1)), settings,
                     deadline=clock.now + 0.035)
    assert sol.iterations == 3 and sol.reason == "time budget" and sol.solve_time_s <= 0.035, sol
    sol = ilqr.solve(dyn, quadratic(Q, R, Qf), np.ones(A.shape[0]), np.zeros((10, 1)), settings,
                     deadline=clock.now + 10.0)
    assert sol.iterations == 8
