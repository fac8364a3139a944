"""Sampling planners (predictive sampling, CEM, MPPI) on a linear model and randomization-robust scoring."""

import dataclasses

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


# --------------------------------------------------------------------------- ensemble CEM (numpy, torch-free)

from robot_rl.control.costs import Cost, CostConfig, CostTermConfig  # noqa: E402
from robot_rl.control.ensemble_cem import EnsembleCEM, EnsembleCEMSettings, EnsembleParams, RolloutCost  # noqa: E402
from robot_rl.control.mpc import MPCController, MPCSettings  # noqa: E402


def random_params(E=3, nx=4, nu=1, angles=(1,), hidden=(16, 16), activation="silu", seed=0):
    rng = np.random.default_rng(seed)
    n_in = nx + len(angles) + nu
    sizes = [n_in, *hidden, 2 * nx]
    f32 = np.float32
    return EnsembleParams(
        weights=tuple((rng.standard_normal((E, a, b)) / np.sqrt(a)).astype(f32) for a, b in zip(sizes, sizes[1:])),
        biases=tuple(0.1 * rng.standard_normal((E, 1, b)).astype(f32) for b in sizes[1:]),
        activation=activation, angle_indices=angles, nx=nx, nu=nu,
        in_mean=rng.standard_normal(n_in).astype(f32), in_std=(0.5 + rng.random(n_in)).astype(f32),
        out_mean=(0.01 * rng.standard_normal(nx)).astype(f32), out_std=(0.1 * rng.random(nx) + 0.01).astype(f32),
        min_logvar=np.full(nx, -6.0, f32), max_logvar=np.full(nx, 0.5, f32))


def reference_forward(p: EnsembleParams, X, U):
    """The PETS model written out plainly in float64: features, normalization, MLP, soft-clamped log-variance."""
    others = [i for i in range(p.nx) if i not in p.angle_indices]
    a = X[..., list(p.angle_indices)]
    h = (np.concatenate([X[..., others], np.cos(a), np.sin(a), U], -1) - p.in_mean) / p.in_std
    act = {"silu": lambda z: z / (1 + np.exp(-z)), "relu": lambda z: np.maximum(z, 0), "tanh": np.tanh}[p.activation]
    for i, (W, b) in enumerate(zip(p.weights, p.biases)):
        h = h @ W.astype(float) + b
        if i < len(p.weights) - 1:
            h = act(h)
    mean, raw = h[..., :p.nx], h[..., p.nx:]
    def sp(z):
        return np.log1p(np.exp(z))

    lv = p.max_logvar - sp(p.max_logvar - raw)
    return mean, p.min_logvar + sp(lv - p.min_logvar)


@pytest.mark.parametrize("activation", ["silu", "relu", "tanh"])
def test_compiled_ensemble_forward_matches_the_plain_formula(activation):
    p = random_params(activation=activation)
    rng = np.random.default_rng(1)
    X = rng.standard_normal((3, 50, 4)).astype(np.float32) * np.array([1, 3, 2, 5], np.float32)
    U = rng.uniform(-10, 10, (3, 50, 1)).astype(np.float32)
    mean, logvar = p.compile().forward(X, U)
    ref_mean, ref_lv = reference_forward(p, X.astype(float), U.astype(float))
    np.testing.assert_allclose(mean, ref_mean, atol=2e-5 * max(1.0, np.abs(ref_mean).max()))
    np.testing.assert_allclose(logvar, ref_lv, atol=2e-5 * max(1.0, np.abs(ref_lv).max()))
    assert np.all(logvar >= p.min_logvar - 1e-6)
    eps = rng.standard_normal((3, 50, 4)).astype(np.float32)
    nxt = p.compile().sample_next(X, U, eps)
    np.testing.assert_allclose(nxt, X + p.out_mean + p.out_std * (ref_mean + np.exp(0.5 * ref_lv) * eps),
                               rtol=1e-4, atol=1e-4)


def test_ensemble_params_save_load_round_trip_and_shape_errors(tmp_path):
    p = random_params()
    p.save(tmp_path / "ens.npz")
    q = EnsembleParams.load(tmp_path / "ens.npz")
    assert (q.activation, q.angle_indices, q.nx, q.nu, q.n_members) == ("silu", (1,), 4, 1, 3)
    for a, b in zip(p.weights + p.biases, q.weights + q.biases):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="in_std must have shape"):
        EnsembleParams(**{**p.__dict__, "in_std": p.in_std[:3]})
    with pytest.raises(ValueError, match="activation 'gelu'"):
        EnsembleParams(**{**p.__dict__, "activation": "gelu"})


def test_rollout_cost_equals_cost_total():
    cost = Cost.from_yaml("config/costs/cartpole_swingup.yaml")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((21, 3 * 8, 4))  # [T+1, P N, nx], rows p N + n
    U = rng.uniform(-10, 10, (8, 20, 1))
    X[5, 7, 2] = np.nan
    ref = cost.total(X.transpose(1, 0, 2), np.tile(U, (3, 1, 1)))
    got = RolloutCost(cost)(X, U)
    assert np.isinf(got[7]) and np.isinf(ref[7])
    np.testing.assert_allclose(got, ref, rtol=1e-12)


def linear_params(A, B, E=2):
    """An exact linear delta model ``x' - x = (A - I) x + B u`` as a relu MLP (z = relu(z) - relu(-z)), no noise."""
    nx, nu = B.shape
    n_in, M = nx + nu, np.hstack([A - np.eye(nx), B]).T  # [n_in, nx]
    W0 = np.hstack([np.eye(n_in), -np.eye(n_in)])
    W1 = np.hstack([np.vstack([M, -M]), np.zeros((2 * n_in, nx))])
    f32 = np.float32
    return EnsembleParams(
        weights=(np.repeat(W0[None], E, 0).astype(f32), np.repeat(W1[None], E, 0).astype(f32)),
        biases=(np.zeros((E, 1, 2 * n_in), f32), np.concatenate([np.zeros((E, 1, nx)), np.full((E, 1, nx), -50.0)],
                                                                 -1).astype(f32)),
        activation="relu", angle_indices=(), nx=nx, nu=nu, in_mean=np.zeros(n_in, f32), in_std=np.ones(n_in, f32),
        out_mean=np.zeros(nx, f32), out_std=np.ones(nx, f32), min_logvar=np.full(nx, -30.0, f32),
        max_logvar=np.zeros(nx, f32))


def quadratic_cost_config(Q, R, Qf):
    terms = [CostTermConfig(f"x{i}", "state", float(Q[i, i]), float(Qf[i, i]), indices=(i,)) for i in range(len(Q))]
    return Cost(CostConfig("quad", len(Q), len(R), (*terms, CostTermConfig("u", "control", float(R[0, 0])))))


@pytest.mark.parametrize("propagation,particles", [("ts1", 1), ("tsinf", 2)])
def test_ensemble_cem_approaches_the_lqr_optimum(propagation, particles):
    A, B, Q, R, Qf = problem()
    T, x0 = 30, np.array([1.0, 0.0])
    optimum = lqr.finite_horizon(A, B, Q, R, Qf, horizon=T).cost(x0)
    cost = quadratic_cost_config(Q, R, Qf)
    p = linear_params(A, B)
    np.testing.assert_allclose(p.compile().sample_next(np.ones((2, 1, 2), np.float32), np.ones((2, 1, 1), np.float32),
                                                       None)[0, 0], A @ [1, 1] + B @ [1], atol=1e-6)
    settings = EnsembleCEMSettings(sampling.SamplingSettings(method="cem", num_samples=128, iterations=30,
                                                             noise_std=2.0, min_std=0.05), propagation, particles)
    planner = EnsembleCEM(p, cost, settings, dt=0.05, u_min=[-np.inf], u_max=[np.inf], rng=np.random.default_rng(0))
    sol = planner.optimize(x0, np.zeros((T, 1)), deadline=float("inf"))
    dyn = linear(A, B, 0.05)
    start = float(cost.total(dyn.rollout(x0, np.zeros((1, T, 1)))[0, 0], np.zeros((T, 1))))
    exact = float(cost.total(dyn.rollout(x0, sol.U[None])[0, 0], sol.U))
    assert optimum <= exact + 1e-9 and exact < optimum + 0.25 * (start - optimum), (exact, optimum, start)
    assert sol.cost == pytest.approx(exact, rel=1e-4)  # float32 rollout of the same plan
    assert sol.iterations == 30 and all(b <= a for a, b in zip(sol.cost_history, sol.cost_history[1:]))


def member_offset_params(E=3):
    """Member e predicts a delta of exactly e on state 0 (zero weights, bias e), negligible noise."""
    p = random_params(E=E, nx=2, angles=(), hidden=(4,), activation="relu")
    b_last = np.zeros((E, 1, 4), np.float32)
    b_last[:, 0, 0] = np.arange(E)
    b_last[:, 0, 2:] = -50.0
    return EnsembleParams(**{**p.__dict__, "weights": (p.weights[0], np.zeros_like(p.weights[1])),
                             "biases": (p.biases[0], b_last), "out_mean": np.zeros(2, np.float32),
                             "out_std": np.ones(2, np.float32), "min_logvar": np.full(2, -30.0, np.float32)})


def test_trajectory_sampling_member_assignment():
    p, T, N = member_offset_params(3), 12, 4
    cost = quadratic_cost_config(np.eye(2), np.eye(1), np.eye(2))
    U = np.zeros((N, T, 1))

    def final(prop, P):
        settings = EnsembleCEMSettings(sampling.SamplingSettings(num_samples=N, num_elites=2), prop, P)
        planner = EnsembleCEM(p, cost, settings,
                              dt=0.1, u_min=[-1], u_max=[1], rng=np.random.default_rng(0))
        eps, perm = planner._draws(T, P * N)
        return planner.rollout(np.zeros(2), U, eps, perm)[-1, :, 0].reshape(P, N)

    # tsinf: particle p keeps member p // (P / E) for the whole horizon
    np.testing.assert_allclose(final("tsinf", 6), np.repeat([[0], [0], [1], [1], [2], [2]], N, 1) * T, atol=1e-3)
    # ts1: a balanced random member per row and step: every step adds 0 + 1 + 2 over the 3 rows of a block
    x = final("ts1", 3)
    assert np.unique(np.round(x, 3)).size > 3  # rows mix members
    np.testing.assert_allclose(x.sum(), T * N * 3, atol=1e-2)


def test_ensemble_cem_runs_in_the_mpc_controller():
    cost = Cost.from_yaml("config/costs/cartpole_swingup.yaml")
    settings = EnsembleCEMSettings(sampling.SamplingSettings(method="cem", num_samples=40, iterations=2,
                                                             num_elites=5), "ts1", 1)
    planner = EnsembleCEM(random_params(E=5), cost, settings, dt=0.02, u_min=[-10], u_max=[10])
    mpc = MPCController(planner, MPCSettings(horizon=15, control_period_s=0.02, replan_budget_s=10.0,
                                             delay_steps=1))
    x = np.array([0.0, np.pi, 0.0, 0.0])
    for k in range(3):
        sol = mpc.replan(x, 0.02 * k)
        u = mpc.action(x, 0.02 * k)
        assert sol.U.shape == (15, 1) and sol.X.shape == (16, 4) and np.isfinite(sol.cost)
        assert -10 <= u[0] <= 10
    assert mpc.stats()["plan_actions"] == 3
    with pytest.raises(ValueError, match="multiple of the member count"):
        EnsembleCEM(random_params(E=5), cost, EnsembleCEMSettings(settings.cem, "tsinf", 3), dt=0.02, u_min=[-10],
                    u_max=[10])


def test_prev_action_rollout_feeds_the_previous_command():
    """A model whose next state depends on the previous command only (one step of latency): the rollout must feed
    ``last_action`` at t = 0 and ``U[t-1]`` after."""
    A, B, Q, R, Qf = problem()
    p = linear_params(A, np.hstack([B, np.zeros_like(B)]))  # action input [u_prev, u]: only u_prev acts
    cost = quadratic_cost_config(Q, R, Qf)
    settings = EnsembleCEMSettings(sampling.SamplingSettings(num_samples=2, num_elites=1), "ts1", 1, prev_action=True)
    planner = EnsembleCEM(p, cost, settings, dt=0.05, u_min=[-5], u_max=[5], rng=np.random.default_rng(0))
    assert planner.nu == 1
    planner.last_action = np.array([2.0])
    U = np.array([[[1.0], [-1.0], [3.0]], [[0.0], [0.0], [0.0]]])  # [N=2, T=3, nu=1]
    eps, perm = planner._draws(3, 2)
    X = planner.rollout(np.zeros(2), U, eps, perm)  # [T+1, R=2, nx]
    x = np.zeros(2)
    for u_prev in (2.0, 1.0, -1.0):  # last_action, U[0, 0], U[0, 1]
        x = A @ x + B[:, 0] * u_prev
    np.testing.assert_allclose(X[-1, 0], x, atol=1e-5)
    np.testing.assert_allclose(planner.step(np.zeros(2), np.array([4.0])), B[:, 0] * 2.0, atol=1e-6)


class _FakeClock:
    """``time`` stand-in: ``perf_counter`` only moves when the planner scores samples (``per_sample`` s each)."""

    def __init__(self, per_sample: float):
        self.now, self.per_sample = 100.0, per_sample

    def perf_counter(self) -> float:
        return self.now


@pytest.mark.parametrize("method", ["predictive", "cem"])
def test_sampling_stops_before_an_iteration_that_would_overrun_the_deadline(monkeypatch, method):
    """Anytime: with 10 ms per iteration and a 25 ms budget, 2 iterations run (a third would end at 30 ms), and the
    solve ends within its budget instead of overrunning it (an overrun is a deadline miss in the MPC)."""
    A, B, Q, R, Qf = problem()
    dyn, cost = linear(A, B, 0.05), quadratic(Q, R, Qf)
    clock = _FakeClock(per_sample=0.010 / 16)
    score = sampling.score

    def timed_score(dynamics, cost_, x0, U, aggregate):
        clock.now += clock.per_sample * len(U)
        return score(dynamics, cost_, x0, U, aggregate)

    monkeypatch.setattr(sampling, "time", clock)
    monkeypatch.setattr(sampling, "score", timed_score)
    s = sampling.SamplingSettings(method=method, num_samples=16, iterations=5)
    sol = sampling.solve(dyn, cost, np.array([1.0, 0.0]), np.zeros((20, 1)), s, rng=np.random.default_rng(0),
                         deadline=clock.now + 0.025)
    assert sol.iterations == 2 and sol.solve_time_s <= 0.025 + 1e-12, (sol.iterations, sol.solve_time_s)
    # with room for them, all iterations run
    sol = sampling.solve(dyn, cost, np.array([1.0, 0.0]), np.zeros((20, 1)), s, rng=np.random.default_rng(0),
                         deadline=clock.now + 1.0)
    assert sol.iterations == 5


def test_knot_matrix_interpolates_between_knots():
    W = sampling.knot_matrix(30, 4)
    assert W.shape == (30, 4) and np.allclose(W.sum(axis=1), 1.0) and np.all(W >= 0)
    knots = np.array([1.0, -2.0, 3.0, 0.5])
    at = np.linspace(0, 29, 4)
    np.testing.assert_allclose(W @ knots, np.interp(np.arange(30), at, knots))
    np.testing.assert_allclose(sampling.knot_matrix(5, 1), np.ones((5, 1)))
    with pytest.raises(ValueError, match="knots must be >= 1"):
        sampling.knot_matrix(5, 0)


def test_knots_and_noise_scales_shape_the_samples():
    """With K knots every sample is piecewise linear between the knots; noise_scales cycle over the samples."""
    T, nu, n = 20, 2, 6
    seen = []

    class Recorder:
        nx, nu, u_min, u_max = 1, 2, np.full(2, -np.inf), np.full(2, np.inf)

        def rollout(self, x0, U):
            seen.append(U.copy())
            return np.zeros((1, U.shape[0], T + 1, 1))

    class Zero:
        def total(self, X, U):
            return np.zeros(X.shape[:2])

    s = sampling.SamplingSettings(method="predictive", num_samples=n, num_elites=2, iterations=1, noise_std=1.0,
                                  knots=3, noise_scales=(1.0, 0.01))
    sampling.solve(Recorder(), Zero(), np.zeros(1), np.zeros((T, nu)), s, rng=np.random.default_rng(0))
    U = seen[0]
    W = sampling.knot_matrix(T, 3)
    flat = U.transpose(1, 0, 2).reshape(T, -1)  # [T, n * nu]
    coef = np.linalg.lstsq(W, flat, rcond=None)[0]
    np.testing.assert_allclose(W @ coef, flat, atol=1e-12)  # every sample lies in the span of the 3 knots
    assert np.abs(np.diff(U, 2, axis=1)).max() > 1e-3  # ... and is not a constant or a single line
    assert np.all(U[0] == 0.0)  # the mean is a candidate
    small, large = np.abs(U[3::2]).max(), np.abs(U[2::2]).max()  # odd samples: scale 0.01
    assert small < 0.1 * large, (small, large)
    with pytest.raises(ValueError, match="exceeds the horizon"):
        sampling.solve(Recorder(), Zero(), np.zeros(1), np.zeros((2, nu)), s)
    with pytest.raises(ValueError, match="noise_scales must be positive"):
        sampling.SamplingSettings(noise_scales=(1.0, 0.0))
    with pytest.raises(ValueError, match="knots must be >= 0"):
        sampling.SamplingSettings(knots=-1)


def test_new_sampling_options_leave_config_hashes_alone():
    """knots / noise_scales are marked hash: unless_default: at their defaults a config (and the PETS model trained
    from it) keeps its hash; set, they change it."""
    from robot_rl.core.config import config_hash

    base = sampling.SamplingSettings()
    assert config_hash(base) == config_hash(dataclasses.replace(base, knots=0, noise_scales=(1.0,)))
    assert "knots" in __import__("robot_rl.core.config", fromlist=["x"]).to_dict(base)  # still dumped
    assert config_hash(base) != config_hash(dataclasses.replace(base, knots=2))
    assert config_hash(base) != config_hash(dataclasses.replace(base, noise_scales=(1.0, 0.1)))
