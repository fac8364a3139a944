"""Sweeps on Ray: grid x seeds -> run directories, summary table, mean +- std plot; resume after interruption."""

import csv
import json

import numpy as np
import pytest
import yaml
from scale_tiny_configs import PPO_RAW

from robot_rl.train.config import load_experiment
from robot_rl.train.runner import train
from robot_rl.train.sweep import parse_grid, plan_trials, run_sweep, run_trial, trial_overrides, trial_status

GRID = ["ppo.learning_rate=0.001,0.0003"]
SHORT = {**PPO_RAW, "train": {**PPO_RAW["train"], "total_steps": 256, "log_every_steps": 128,
                              "eval_every_steps": 128, "checkpoint_every_steps": 128}}


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "ppo_tiny.yaml"
    path.write_text(yaml.safe_dump(SHORT))
    return path


def test_grid_parsing_and_plan(tmp_path):
    grid = parse_grid(["a.b=1,2", "c=x,y,z"])
    assert grid == {"a.b": ["1", "2"], "c": ["x", "y", "z"]}
    trials = plan_trials(grid, [0, 1], tmp_path)
    assert len(trials) == 12 and len({t.name for t in trials}) == 12
    assert trial_overrides(trials[0], ["train.total_steps=5"]) == ["train.total_steps=5", "a.b=1", "c=x", "seed=0"]
    for bad in (["a.b"], ["a.b=1,"], ["seed=1,2"], ["a=1", "a=2"]):
        with pytest.raises(ValueError):
            parse_grid(bad)


@pytest.mark.slow
def test_sweep_runs_grid_by_seeds_on_ray(ray_cluster, tmp_path, config_file):
    out = tmp_path / "sweep"
    res = run_sweep(config_file, parse_grid(GRID), [0, 1], out, backend="ray")
    assert not res["failed"]
    assert sorted(res["actions"].values()) == ["started"] * 4
    finals = {}
    for t in res["trials"]:
        info = json.loads((t.run_dir / "run.json").read_text())
        assert info["status"] == "complete" and info["seed"] == t.seed and info["env_steps"] == 256
        cfg = load_experiment(t.run_dir / "config.yaml")
        assert str(cfg.ppo.learning_rate) == t.point[0].split("=")[1] or cfg.ppo.learning_rate == float(
            t.point[0].split("=")[1])
        assert (t.run_dir / "eval.csv").is_file() and (t.run_dir / "checkpoints" / "latest.pt").is_file()
        finals[t.name] = info["final_eval"]["return_mean"]
    with open(out / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["trial"] for r in rows} == set(finals)
    md = (out / "summary.md").read_text()
    for lr in ("0.001", "0.0003"):
        vals = [v for k, v in finals.items() if k.startswith(f"ppo.learning_rate-{lr}__")]
        assert len(vals) == 2
        assert f"| {lr} | 2/2 | {np.mean(vals):.1f} +- {np.std(vals):.1f} |" in md
    png = (out / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


@pytest.mark.slow
def test_interrupted_sweep_resumes_only_missing_trials(ray_cluster, tmp_path, config_file):
    out = tmp_path / "sweep"
    grid = parse_grid(GRID)
    trials = plan_trials(grid, [0, 1], out)
    overrides = ["train.progress=false"]
    # the state a killed sweep leaves: one trial complete, one interrupted after its first checkpoint, the rest
    # never started
    done, cut = trials[0], trials[1]
    run_trial(str(config_file), trial_overrides(done, overrides), str(done.run_dir))
    cfg = load_experiment(config_file, trial_overrides(cut, overrides))
    assert train(cfg, cut.run_dir, stop_after_steps=128)["status"] == "interrupted"
    assert [trial_status(t.run_dir) for t in trials] == ["complete", "interrupted", "new", "new"]
    done_json = (done.run_dir / "run.json").read_bytes()
    done_ckpt_mtime = (done.run_dir / "checkpoints" / "latest.pt").stat().st_mtime_ns

    res = run_sweep(config_file, grid, [0, 1], out, backend="ray")
    assert not res["failed"]
    assert res["actions"] == {trials[0].name: "skipped", trials[1].name: "resumed", trials[2].name: "started",
                              trials[3].name: "started"}
    assert (done.run_dir / "run.json").read_bytes() == done_json, "a complete trial was run again"
    assert (done.run_dir / "checkpoints" / "latest.pt").stat().st_mtime_ns == done_ckpt_mtime
    assert all(trial_status(t.run_dir) == "complete" for t in trials)
    with open(cut.run_dir / "metrics.csv", newline="") as f:
        steps = [int(float(r["step"])) for r in csv.DictReader(f)]
    assert steps == sorted(set(steps)) and steps[-1] == 256, f"resumed trial logged steps {steps}"
    # the same command once more: nothing left to do
    again = run_sweep(config_file, grid, [0, 1], out, backend="ray")
    assert set(again["actions"].values()) == {"skipped"}
    with pytest.raises(ValueError, match="different sweep"):
        run_sweep(config_file, parse_grid(["ppo.learning_rate=0.01,0.02"]), [0, 1], out, backend="ray")


def test_sweep_command_local_backend_and_errors(tmp_path, config_file, capsys):
    from robot_rl.cli import main

    out = tmp_path / "cli"
    argv = ["sweep", "--config", str(config_file), "--grid", "ppo.n_epochs=1", "--seeds", "1", "--backend", "local",
            "--set", "train.total_steps=128", "--set", "train.eval_every_steps=0", "--out", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "1 trials (0 already complete, 0 resumed, 1 started)" in text and "| 1 | 1/1 |" in text
    assert trial_status(out / "trials" / "ppo.n_epochs-1__seed-0") == "complete"
    assert main(argv) == 0 and "1 already complete" in capsys.readouterr().out
    assert main(["sweep", "--config", str(config_file), "--grid", "ppo.n_epochs", "--out", str(tmp_path / "x")]) == 2
    assert "KEY=V1,V2" in capsys.readouterr().err
    assert main(["sweep", "--config", str(config_file), "--grid", "ppo.no_such_key=1,2", "--backend", "local",
                 "--out", str(tmp_path / "y")]) == 2
    assert "ppo.no_such_key" in capsys.readouterr().err
    assert not (tmp_path / "y" / "trials").exists(), "a bad grid key must fail before any trial runs"
