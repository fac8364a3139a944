"""Sampling planners (predictive sampling, CEM, MPPI) on a linear model and randomization-robust scoring."""

import mujoco
import numpy as np
import pytest

from robot_rl.control import lqr, sampling
from robot_rl.control.costs import quadratic
from robot_rl.control.dynamics import LearnedDynamics, MujocoDynamics, linear
from robot_rl.control.randomize import perturbed_models
from robot_rl.core.assets import find_asset


def problem():
    dt = 0.05
    A = np.array([[1.0, dt], [0.0, 1.0]])
    B = np.array([[0.5 * dt**2], [dt]])
    Q, R, Qf = np.diag([1.0, 0.1]), 0.01 * np.eye(1), np.diag([10.0, 1.0])
    return A, B, Q, R, Qf


@pytest.mark.parametrize("method", ["predictive", "cem", "mppi"])
def test_sampling_planners_approach_the_lqr_optimum(method):
    A, B, Q, R, Qf = problem()
    T = 30
    x0 = np.array([1.0, 0.0])
    optimum = lqr.finite_horizon(A, B, Q, R, Qf, horizon=T).cost(x0)
    dyn, cost = linear(A, B, 0.05), quadratic(Q, R, Qf)
    settings = sampling.SamplingSettings(method=method, num_samples=128, iterations=30, noise_std=2.0, min_std=0.05)
    sol = sampling.solve(dyn, cost, x0, np.zeros((T, 1)), settings, rng=np.random.default_rng(0))
    start = float(cost.total(dyn.rollout(x0, np.zeros((1, T, 1)))[0, 0], np.zeros((T, 1))))
    assert optimum <= sol.cost + 1e-9  # cannot beat the exact optimum
    assert sol.cost < optimum + 0.25 * (start - optimum), (sol.cost, optimum, start)
    assert all(b <= a + 1e-12 for a, b in zip(sol.cost_history, sol.cost_history[1:]))  # best-so-far never worsens
    np.testing.assert_allclose(cost.total(sol.X, sol.U), sol.cost, rtol=1e-9)


def test_sampling_is_deterministic_given_rng_and_respects_limits():
    A, B, Q, R, Qf = problem()
    dyn = linear(A, B, 0.05, u_min=-0.3, u_max=0.3)
    s = sampling.SamplingSettings(method="cem", num_samples=32, iterations=5)
    a = sampling.solve(dyn, quadratic(Q, R, Qf), np.array([1.0, 0.0]), np.zeros((20, 1)), s,
                       rng=np.random.default_rng(7))
    b = sampling.solve(dyn, quadratic(Q, R, Qf), np.array([1.0, 0.0]), np.zeros((20, 1)), s,
                       rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a.U, b.U)
    assert np.all(np.abs(a.U) <= 0.3)


def test_scenario_scoring_mean_and_worst_case():
    m = mujoco.MjModel.from_xml_path(str(find_asset("sim/cartpole/cartpole.xml")))
    models = perturbed_models(m, 4, np.random.default_rng(0), scale=2.0)
    dyn = MujocoDynamics(m, 2, scenario_models=models)
    from robot_rl.control.costs import Cost

    cost = Cost.from_yaml("config/costs/cartpole_swingup.yaml")
    U = np.random.default_rng(0).uniform(-10, 10, (8, 30, 1))
    mean, X = sampling.score(dyn, cost, np.array([0.0, np.pi, 0.0, 0.0]), U, "mean")
    worst, _ = sampling.score(dyn, cost, np.array([0.0, np.pi, 0.0, 0.0]), U, "max")
    per = cost.total(X, U[None])  # [4, 8]
    np.testing.assert_allclose(mean, per.mean(0))
    np.testing.assert_allclose(worst, per.max(0))
    assert np.all(worst >= mean) and np.any(worst > mean + 1e-6)


def test_learned_model_rollout_is_batched_over_particles():
    calls = []

    def predict(X, U):  # [M, N, nx], [M, N, nu]: a 2-member "ensemble" with different gains
        calls.append(X.shape)
        gain = np.array([1.0, 1.1])[:, None, None]
        return X + 0.1 * gain * U

    dyn = LearnedDynamics(predict, nx=1, nu=1, dt=0.1, n_particles=2)
    X = dyn.rollout(np.zeros(1), np.ones((5, 4, 1)))
    assert X.shape == (2, 5, 5, 1) and len(calls) == 4 and calls[0] == (2, 5, 1)
    np.testing.assert_allclose(X[:, 0, -1, 0], [0.4, 0.44])
    np.testing.assert_allclose(dyn.step(np.zeros(1), np.ones(1)), [0.105])  # particle mean
