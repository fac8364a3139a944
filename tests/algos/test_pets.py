"""PETS pieces: bounded log-variance, Gaussian NLL, trajectory sampling, model fit; the learning test is slow."""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from robot_rl.algos.pets import PetsConfig, train_pets
from robot_rl.algos.pets_model import ProbabilisticEnsemble, fit, gaussian_nll, make_predictor, soft_clamp_logvar


@pytest.fixture(autouse=True)
def one_torch_thread():
    # small batched MLPs on a shared 2-core machine: more threads only contend
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def sp(v):
    return math.log1p(math.exp(v))


def test_soft_clamp_logvar_is_bounded_and_monotone():
    lo, hi = torch.tensor(-2.0), torch.tensor(1.0)
    raw = torch.tensor([-100.0, -0.5, 0.0, 100.0])
    out = soft_clamp_logvar(raw, lo, hi)
    # hand-computed at raw = 0: lv = 1 - softplus(1) = -0.31326; out = -2 + softplus(1.68674) = -0.17149
    assert out[2].item() == pytest.approx(-2.0 + sp((1.0 - sp(1.0)) + 2.0), abs=1e-5)
    # limits: raw -> -inf gives lo; raw -> +inf gives lo + softplus(hi - lo) (the MBRL-Lib composition)
    assert out[0].item() == pytest.approx(-2.0, abs=1e-6)
    assert out[3].item() == pytest.approx(-2.0 + sp(3.0), abs=1e-5)
    assert torch.all(out[1:] > out[:-1])


def test_gaussian_nll_hand_computed():
    mean, logvar, target = torch.tensor([0.0, 1.0]), torch.tensor([0.0, math.log(4.0)]), torch.tensor([1.0, 3.0])
    # 1/2 [(1)^2 / 1 + 0] = 0.5 ; 1/2 [(2)^2 / 4 + log 4] = 0.5 + 0.6931 ; mean = 0.8466
    assert gaussian_nll(mean, logvar, target).item() == pytest.approx((0.5 + 0.5 + 0.5 * math.log(4.0)) / 2, rel=1e-6)


def toy_model(n_members=3):
    torch.manual_seed(0)
    model = ProbabilisticEnsemble(2, 1, (), n_members, (16,), "tanh")
    with torch.no_grad():  # make member e predict a delta of exactly e (normalized units), no noise
        last = model.net.net[-1]
        last.weight.zero_()
        for e in range(n_members):
            last.bias[e, 0, :2] = float(e)
        last.bias[:, 0, 2:] = -50.0  # log-variance at the lower bound (-10): sampling noise ~ e^-5
    return model


def test_tsinf_keeps_member_per_particle_and_ts1_mixes():
    model = toy_model(3)
    gen = torch.Generator().manual_seed(0)
    P, N = 6, 4
    X = np.zeros((P, N, 2))
    U = np.zeros((P, N, 1))
    out = make_predictor(model, "tsinf", gen)(X, U)
    np.testing.assert_allclose(out[:, :, 0], np.repeat(np.arange(P)[:, None] % 3, N, axis=1), atol=1e-2)
    mixed = make_predictor(model, "ts1", gen)(X, U)
    members = np.rint(mixed[:, :, 0]).astype(int)
    assert set(np.unique(members)) == {0, 1, 2}
    assert np.bincount(members.ravel()).tolist() == [8, 8, 8]  # a permutation over members, balanced


def test_fit_learns_linear_dynamics_and_disagreement_shrinks_on_data():
    rng = np.random.default_rng(0)
    A = np.array([[1.0, 0.02], [-0.1, 0.98]])
    B = np.array([[0.0], [0.05]])
    X = rng.uniform(-1, 1, (600, 2))
    U = rng.uniform(-1, 1, (600, 1))
    Xn = X @ A.T + U @ B.T + 0.001 * rng.standard_normal((600, 2))
    cfg = PetsConfig(train_steps=200, n_members=3, n_particles=3, hidden=(32, 32), angle_indices=())
    torch.manual_seed(0)
    model = ProbabilisticEnsemble(2, 1, (), 3, cfg.hidden, "silu")
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(0)
    fit(model, {"x": X, "u": U, "x_next": Xn}, cfg, opt, gen)
    pred = make_predictor(model, "tsinf", gen)(X[None, :100].repeat(3, 0), U[None, :100].repeat(3, 0)).mean(0)
    err = np.abs(pred - Xn[:100]).mean()
    assert err < 0.2 * np.abs(Xn[:100] - X[:100]).mean()  # far better than "no change"
    assert model.disagreement(X[0], U[0]) < model.disagreement(np.array([8.0, -8.0]), np.array([5.0]))


def linear_data(n=600, seed=0):
    rng = np.random.default_rng(seed)
    A = np.array([[1.0, 0.02], [-0.1, 0.98]])
    B = np.array([[0.0], [0.05]])
    X = rng.uniform(-1, 1, (n, 2))
    U = rng.uniform(-1, 1, (n, 1))
    return {"x": X, "u": U, "x_next": X @ A.T + U @ B.T + 0.001 * rng.standard_normal((n, 2))}


def test_fit_epochs_learns_and_stops_early():
    data = linear_data()
    cfg = PetsConfig(train_epochs=60, patience=5, n_members=3, n_particles=3, hidden=(32, 32), angle_indices=())
    torch.manual_seed(0)
    model = ProbabilisticEnsemble(2, 1, (), 3, cfg.hidden, "silu")
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(0)
    fit(model, data, cfg, opt, gen)
    X, U, Xn = data["x"][:100], data["u"][:100], data["x_next"][:100]
    pred = make_predictor(model, "tsinf", gen)(X[None].repeat(3, 0), U[None].repeat(3, 0)).mean(0)
    assert np.abs(pred - Xn).mean() < 0.2 * np.abs(Xn - X).mean()


def test_fit_epochs_keeps_each_members_best_heldout_weights():
    # a learning rate that wrecks the model: the held-out MSE never beats the initial weights, so every member is
    # restored to them after `patience` epochs (the Adam steps did move them in between)
    cfg = PetsConfig(train_epochs=50, patience=2, n_members=3, n_particles=3, hidden=(16,), angle_indices=(),
                     lr=50.0)
    torch.manual_seed(0)
    model = ProbabilisticEnsemble(2, 1, (), 3, cfg.hidden, "silu")
    before = [p.detach().clone() for p in model.net.parameters()]
    steps = []
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    opt.register_step_post_hook(lambda *_: steps.append(1))
    fit(model, linear_data(), cfg, opt, torch.Generator().manual_seed(0))
    n_batches = int(0.9 * 600) // cfg.batch_size
    assert len(steps) == (cfg.patience) * n_batches  # stopped after `patience` epochs without improvement
    for a, b in zip(before, model.net.parameters()):
        torch.testing.assert_close(a, b.detach())
    with pytest.raises(ValueError, match="holdout_fraction"):
        PetsConfig(train_epochs=5, holdout_fraction=0.0)


def test_ensemble_cem_plan_mean_returns_the_final_cem_mean():
    from robot_rl.control.costs import Cost
    from robot_rl.control.ensemble_cem import EnsembleCEM, EnsembleCEMSettings
    from robot_rl.control.sampling import SamplingSettings

    torch.manual_seed(0)
    params = ProbabilisticEnsemble(4, 1, (1,), 5, (16,), "silu").numpy_params()
    cost = Cost.from_yaml("config/costs/cartpole_swingup.yaml")
    x0, U0 = np.array([0.0, np.pi, 0.0, 0.0]), np.zeros((20, 1))

    def solve(plan, iterations):
        cem = SamplingSettings(method="cem", num_samples=50, iterations=iterations, num_elites=5, noise_std=0.5)
        planner = EnsembleCEM(params, cost, EnsembleCEMSettings(cem, "ts1", 1, plan=plan), dt=0.02,
                              u_min=[-10], u_max=[10], rng=np.random.default_rng(3))
        return planner.optimize(x0, U0, deadline=float("inf"))

    best, mean = solve("best", 2), solve("mean", 2)
    assert not np.allclose(best.U, mean.U)
    assert np.all(np.abs(mean.U) <= 10) and np.abs(mean.U).max() > 0
    assert np.abs(np.diff(mean.U[:, 0])).mean() < np.abs(np.diff(best.U[:, 0])).mean()  # elite mean is smoother
    with pytest.raises(ValueError, match="plan must be"):
        EnsembleCEM(params, cost, EnsembleCEMSettings(SamplingSettings(method="cem"), "ts1", 1, plan="median"),
                    dt=0.02, u_min=[-10], u_max=[10])


@pytest.mark.slow
def test_pets_swings_up_cartpole_within_8_episodes():
    # 1 random + at most 8 MPC episodes of 3 s (<= 1350 transitions, 27 s of experience), no randomization; seed 0
    # solves in 5 (ensemble_cem planner)
    cfg = PetsConfig(episodes=8, episode_steps=150, seed=0, stop_when_solved=True, randomization=None)
    logs, _ = train_pets(cfg, log=lambda e: None)
    mpc = [e for e in logs if e.kind == "mpc"]
    solved = [e.episode for e in mpc if e.upright_fraction_last_second >= 0.9]
    assert solved, [(e.episode, round(e.env_return, 1), e.upright_fraction_last_second) for e in mpc]
    assert mpc[-1].env_return > 2 * logs[0].env_return
    # epistemic disagreement on visited states falls as data accumulates
    assert mpc[-1].mean_disagreement < mpc[0].mean_disagreement
    # learning, not luck: the random episode stays down
    assert logs[0].upright_fraction_last_second == 0.0


def test_pets_config_file_loads():
    from robot_rl.core.config import load_config

    cfg = load_config(PetsConfig, "config/pets_cartpole_swingup.yaml")
    assert cfg.propagation == "tsinf" and cfg.n_particles % cfg.n_members == 0
    rnd = load_config(PetsConfig, "config/pets_cartpole_swingup_randomized.yaml")
    assert rnd.randomization == "default" and rnd.prev_action and rnd.propagation == "ts1" and rnd.n_particles == 1
    with pytest.raises(ValueError, match="multiple of n_members"):
        load_config(PetsConfig, "config/pets_cartpole_swingup.yaml", overrides=["n_particles=7"])


def test_eval_config_overrides_only_the_cem_iterations():
    from robot_rl.algos.pets import eval_config
    from robot_rl.core.config import load_config

    cfg = load_config(PetsConfig, "config/pets_cartpole_swingup_randomized.yaml")
    ev = eval_config(cfg)
    assert cfg.eval_cem_iterations == 5 and ev.cem.iterations == 5 and cfg.cem.iterations == 3
    assert dataclasses.replace(ev, cem=cfg.cem) == cfg
    assert eval_config(dataclasses.replace(cfg, eval_cem_iterations=0)).cem.iterations == 3
    with pytest.raises(ValueError, match="eval_cem_iterations"):
        PetsConfig(eval_cem_iterations=-1)


def test_numpy_params_forward_matches_the_torch_model():
    torch.manual_seed(0)
    model = ProbabilisticEnsemble(4, 1, (1,), 5, (32, 32), "silu")
    with torch.no_grad():  # non-trivial normalizers, as after fit()
        model.in_mean.copy_(torch.randn(6))
        model.in_std.copy_(torch.rand(6) + 0.5)
        model.out_mean.copy_(0.01 * torch.randn(4))
        model.out_std.copy_(0.1 * torch.rand(4) + 0.01)
    rng = np.random.default_rng(0)
    X = (rng.standard_normal((5, 64, 4)) * [1, 3, 2, 5]).astype(np.float32)
    U = rng.uniform(-10, 10, (5, 64, 1)).astype(np.float32)
    with torch.no_grad():
        ref_mean, ref_lv = (t.numpy() for t in model(torch.from_numpy(X), torch.from_numpy(U)))
    mean, logvar = model.numpy_params().compile().forward(X, U)
    np.testing.assert_allclose(mean, ref_mean, atol=1e-5)
    np.testing.assert_allclose(logvar, ref_lv, atol=1e-5)


def tiny_overrides():
    return ["episodes=1", "train_steps=20", "episode_steps=30", "eval_episodes=1", "eval_steps=10",
            "cem.num_samples=20", "cem.num_elites=4", "mpc.horizon=5", "progress=false"]


def test_robot_rl_train_pets_writes_a_run_dir_that_exports(tmp_path):
    from robot_rl.cli import main
    from robot_rl.control.ensemble_cem import EnsembleParams
    from robot_rl.core.config import config_hash
    from robot_rl.core.profile import load_profile
    from robot_rl.export.runtime import OnnxEnsemble
    from robot_rl.train.checkpoint import CheckpointError
    from robot_rl.train.config import load_experiment
    from robot_rl.train.logger import read_csv
    from robot_rl.train.pets_artifact import NPZ_FILE, StateUnits, export_run, load_ensemble
    from robot_rl.train.runner import train

    run = tmp_path / "run"
    args = ["train", "--config", "config/pets_cartpole_swingup.yaml", "--run-dir", str(run)]
    assert main(args + [a for o in tiny_overrides() for a in ("--set", o)]) == 0
    for f in ("config.yaml", "metrics.csv", "eval.csv", "run.json", "learning_curve.png", "checkpoints/latest.pt",
              "checkpoints/best.pt"):
        assert (run / f).is_file(), f
    cfg = load_experiment(run / "config.yaml")
    assert cfg.algo == "pets" and cfg.randomization is None and cfg.episode_steps == 30
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "complete" and info["algo"] == "pets" and info["env_steps"] == 60
    assert info["config_hash"] == config_hash(cfg)
    metrics, evals = read_csv(run / "metrics.csv"), read_csv(run / "eval.csv")
    assert [r["kind"] for r in metrics] == ["random", "mpc"] and [r["step"] for r in metrics] == ["30", "60"]
    # one evaluation per refit: before the MPC episode (30 transitions) and the final refit (60)
    assert [r["step"] for r in evals] == ["30", "60"] and all(0 <= float(r["return_mean"]) <= 10 for r in evals)
    assert info["best_eval_return"] == max(float(r["return_mean"]) for r in evals)
    with pytest.raises(CheckpointError, match="not resumable"):
        train(cfg, run, resume=True)
    with pytest.raises(FileExistsError, match="already holds"):
        train(cfg, run)

    model, loaded_cfg, _ = load_ensemble(run)
    assert loaded_cfg == cfg
    # a 60-transition model sees the random-force parity inputs far from its data (large outputs): looser bound
    sc = export_run(run, tmp_path / "art", parity_bound=1e-3)
    assert sc["algo"] == "pets" and sc["training"]["config_hash"] == config_hash(cfg)
    # `robot-rl export` recognises the PETS run and writes the same artifact
    assert main(["export", str(run), "--out", str(tmp_path / "art_cli"), "--parity-bound", "1e-3"]) == 0
    for f in ("dynamics.onnx", "dynamics.json", NPZ_FILE):
        assert (tmp_path / "art_cli" / f).is_file(), f
    assert (tmp_path / "art_cli" / "dynamics.onnx").read_bytes() == (tmp_path / "art" / "dynamics.onnx").read_bytes()
    ens = OnnxEnsemble(tmp_path / "art", load_profile("cartpole"))
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.uniform(-1, 1, 50), rng.uniform(-np.pi, np.pi, 50), rng.normal(0, 1, (50, 2))])
    u = rng.uniform(-10, 10, (50, 1))
    mean, logvar = ens(x, u)
    with torch.no_grad():
        ref = StateUnits(model)(torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(u, dtype=torch.float32))
    np.testing.assert_allclose(mean, ref[0].numpy(), rtol=1e-5, atol=1e-4)
    # the numpy weights shipped next to the ONNX file give the same prediction without torch or onnxruntime
    compiled = EnsembleParams.load(tmp_path / "art" / NPZ_FILE).compile()
    E = compiled.n_members
    norm_mean, _ = compiled.forward(np.broadcast_to(x.astype(np.float32), (E, 50, 4)),
                                    np.broadcast_to(u.astype(np.float32), (E, 50, 1)))
    np.testing.assert_allclose(compiled.out_mean + compiled.out_std * norm_mean, mean, rtol=1e-4, atol=1e-4)


def test_prev_action_model_trains_plans_and_exports(tmp_path):
    """``prev_action``: the model input carries the previous command; the planner feeds it and the export takes it as
    extra state inputs ``prev_<joint>``."""
    from robot_rl.core.config import load_config
    from robot_rl.core.profile import load_profile
    from robot_rl.export.runtime import OnnxEnsemble
    from robot_rl.train.config import load_experiment
    from robot_rl.train.pets_artifact import StateUnits, export_run, load_ensemble
    from robot_rl.train.runner import train

    cfg = load_experiment("config/pets_cartpole_swingup_randomized.yaml", tiny_overrides())
    assert cfg.prev_action and cfg.randomization == "default"
    info = train(cfg, tmp_path / "run")
    assert info["status"] == "complete" and info["env_steps"] == 60
    model, _, _ = load_ensemble(tmp_path / "run")
    assert model.nu == 2  # [u_prev, u]
    export_run(tmp_path / "run", tmp_path / "art", parity_bound=1e-3)
    ens = OnnxEnsemble(tmp_path / "art", load_profile("cartpole"))
    assert ens.state_names[-1] == "prev_slider" and ens.output_names == ("slider", "hinge", "slider_vel", "hinge_vel")
    s = np.array([[0.1, 3.0, 0.0, 0.5, -4.0]])
    mean, _ = ens(s, np.array([[2.0]]))
    with torch.no_grad():
        ref, _ = StateUnits(model)(torch.tensor(s, dtype=torch.float32), torch.tensor([[2.0]]))
    np.testing.assert_allclose(mean, ref.numpy(), rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="prev_action needs planner ensemble_cem"):
        load_config(PetsConfig, "config/pets_cartpole_swingup.yaml", overrides=["prev_action=true",
                                                                               "planner=sampling"])
