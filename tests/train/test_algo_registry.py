"""The algorithm registry is the one place an ``algo:`` name is resolved: every shipped config's ``algo`` is a row,
each row's classes import and agree with it, and the runner has a loop for each row."""

import dataclasses
import importlib
import typing
from pathlib import Path

import pytest

from robot_rl.algos.registry import ALGOS, Loop, algo_spec
from robot_rl.core.config import ConfigError, load_yaml
from robot_rl.train import runner
from robot_rl.train.config import load_experiment

ROOT = Path(__file__).resolve().parents[2]
ALGO_CONFIGS = sorted(p for p in (ROOT / "config").glob("*.yaml") if "algo" in load_yaml(p))


def test_algo_configs_are_found():
    assert {load_yaml(p)["algo"] for p in ALGO_CONFIGS} >= {"sac", "ppo", "iql", "gciql", "pets"}


@pytest.mark.parametrize("path", ALGO_CONFIGS, ids=[p.stem for p in ALGO_CONFIGS])
def test_every_config_algo_is_in_the_registry(path):
    algo = load_yaml(path)["algo"]
    assert algo in ALGOS, f"{path.name}: algo {algo!r} has no row in robot_rl/algos/registry.py"
    cfg = load_experiment(path)
    assert type(cfg) is ALGOS[algo].config_class() and cfg.algo == algo


@pytest.mark.parametrize("name", sorted(ALGOS))
def test_registry_rows_resolve_and_have_a_loop(name):
    spec = ALGOS[name]
    assert spec.name == name and spec.loop in typing.get_args(Loop)
    cls = spec.config_class()
    assert dataclasses.is_dataclass(cls)
    # the config class accepts exactly this name in its ``algo`` key
    assert typing.get_args(typing.get_type_hints(cls)["algo"]) == (name,)
    if spec.loop in runner.OWN_LOOPS:
        assert spec.learner is None, f"{name}: the {spec.loop!r} loop builds no learner"
    else:
        assert spec.learner is not None, f"{name}: the runner's segment loop needs a learner class"
        module, _, attr = spec.learner.partition(":")
        assert isinstance(getattr(importlib.import_module(module), attr), type)


def test_make_learner_builds_the_registered_class():
    from train_tiny_configs import SAC_TINY, tiny

    from robot_rl.algos.sac import SacLearner

    learner = runner.make_learner(tiny(SAC_TINY))
    try:
        assert type(learner) is SacLearner
    finally:
        learner.close()


@pytest.mark.parametrize("raw, message", [
    ({"algo": "dqn"}, "unknown algo 'dqn'"),
    ({"seed": 0}, "required key is missing"),
])
def test_bad_algo_names_the_choices(raw, message):
    with pytest.raises(ConfigError) as err:
        load_experiment(raw=raw)
    assert err.value.key_path == "algo"
    assert message in str(err.value) and str(sorted(ALGOS)) in str(err.value)


def test_algo_spec_of_a_run_without_a_learner_refuses_to_build_one():
    spec = algo_spec("pets")
    with pytest.raises(ValueError, match="builds no learner"):
        spec.make_learner(None)
