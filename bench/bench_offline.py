"""Offline pipeline throughput: dataset load + relabeling [transitions/s], and IQL gradient steps/s vs d3rlpy's IQL.

Run as a script (``python bench/bench_offline.py``, writes bench/results/offline.md) or through pytest
(``pytest -m bench bench/bench_offline.py``, shorter, no results file). Same data, same sizes for both learners:
ArmReach noisy-expert episodes (obs = concat(observation, desired_goal), 17 dims; 7 actions), actor / critics / value
MLPs 256 x 256, batch 256, one torch thread (the machine is shared; times are the best of ``repeats`` runs).

* load: ``robot_rl.data.dataset.load_dataset`` (byte-index read, CRC-32 of every array, every semantic check).
* relabel: ``GoalEpisodes.sample`` batches of 256 with the goal-conditioned IQL mixture (future/geometric/random/
  original) including the sparse reward and mask.
* IQL: ``robot_rl.algos.iql.IqlLearner.train_until`` (batch sampling included) vs ``d3rlpy.algos.IQL.fit`` (its
  sampling included, logging off). d3rlpy is a bench-only peer (requirements-bench.txt).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from _machine import machine_header  # noqa: E402

from robot_rl.algos.iql import DatasetConfig, IqlConfig, IqlExperiment  # noqa: E402
from robot_rl.commands.collect import collect  # noqa: E402
from robot_rl.core.experiment import EnvConfig  # noqa: E402
from robot_rl.data.dataset import load_dataset  # noqa: E402
from robot_rl.data.relabel import GoalEpisodes, RelabelConfig, Transitions  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "offline.md"
HIDDEN = (256, 256)
BATCH = 256


def make_data(path: Path, episodes: int) -> str:
    collect("robot_rl/ArmReach-v0", "noisy-expert", episodes, str(path), noise=0.3, random_prob=0.1, progress=False)
    return str(path)


def load_rate(path: str, repeats: int) -> tuple[float, int]:
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        ds = load_dataset(path)
        best = min(best, time.perf_counter() - t0)
    return ds.n_steps / best, ds.n_steps


def relabel_rate(path: str, batches: int, repeats: int) -> float:
    goals = GoalEpisodes(load_dataset(path).episodes)
    cfg = RelabelConfig()
    rng = np.random.default_rng(0)
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(batches):
            goals.sample(BATCH, rng, cfg)
        best = min(best, time.perf_counter() - t0)
    return batches * BATCH / best


def ours_steps_per_s(path: str, steps: int, repeats: int) -> float:
    torch.set_num_threads(1)
    cfg = IqlExperiment(algo="iql", env=EnvConfig("robot_rl/ArmReach-v0"), dataset=DatasetConfig(path),
                        iql=IqlConfig(hidden=HIDDEN, batch_size=BATCH))
    learner = cfg.make_learner()
    learner.train_until(10)  # warm-up (allocations)
    best = np.inf
    for _ in range(repeats):
        start = learner.env_steps
        t0 = time.perf_counter()
        learner.train_until(start + steps)
        best = min(best, time.perf_counter() - t0)
    return steps / best


def d3rlpy_steps_per_s(path: str, steps: int, repeats: int) -> tuple[float, str]:
    import d3rlpy

    torch.set_num_threads(1)
    tr = Transitions.from_episodes(load_dataset(path).episodes)
    ends = np.zeros(len(tr), dtype=bool)
    ds = load_dataset(path)
    idx = np.cumsum([len(e) for e in ds.episodes]) - 1
    ends[idx] = True
    data = d3rlpy.dataset.MDPDataset(observations=tr.observations, actions=tr.actions, rewards=tr.rewards,
                                     terminals=tr.terminals, timeouts=ends & (tr.terminals == 0))
    factory = d3rlpy.models.VectorEncoderFactory(hidden_units=list(HIDDEN))
    iql = d3rlpy.algos.IQLConfig(batch_size=BATCH, actor_encoder_factory=factory, critic_encoder_factory=factory,
                                 value_encoder_factory=factory).create(device="cpu:0")
    noop = d3rlpy.logging.NoopAdapterFactory()
    iql.fit(data, n_steps=10, n_steps_per_epoch=10, show_progress=False, logger_adapter=noop)  # build + warm-up
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        iql.fit(data, n_steps=steps, n_steps_per_epoch=steps, show_progress=False, logger_adapter=noop)
        best = min(best, time.perf_counter() - t0)
    return steps / best, d3rlpy.__version__


def run(episodes: int, steps: int, repeats: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = make_data(Path(tmp) / "arm", episodes)
        load, n = load_rate(path, repeats)
        out = {"episodes": episodes, "transitions": n, "load_tps": load,
               "relabel_tps": relabel_rate(path, 200, repeats), "ours_sps": ours_steps_per_s(path, steps, repeats)}
        try:
            out["d3rlpy_sps"], out["d3rlpy_version"] = d3rlpy_steps_per_s(path, steps, repeats)
        except ImportError as exc:
            out["d3rlpy_sps"], out["d3rlpy_version"] = float("nan"), f"not installed ({exc})"
    return out


def write_results(r: dict) -> str:
    text = f"""# Offline pipeline throughput

{machine_header()}

`python bench/bench_offline.py` on {platform.machine()} / Python {platform.python_version()} / torch
{torch.__version__}, one torch thread, shared 2-core machine (best of repeats; 1-min load average at the end of
the run: {os.getloadavg()[0]:.1f}). Data: {r['episodes']} ArmReach
noisy-expert episodes ({r['transitions']} transitions), obs 17, actions 7; nets 256 x 256, batch {BATCH}.

| what | rate |
|---|---|
| dataset load (byte index, CRC-32, semantic checks) | {r['load_tps']:,.0f} transitions/s |
| hindsight relabeling (`GoalEpisodes.sample`, 256 per batch) | {r['relabel_tps']:,.0f} transitions/s |
| robot_rl IQL (`IqlLearner`, sampling included) | {r['ours_sps']:.1f} gradient steps/s |
| d3rlpy {r['d3rlpy_version']} IQL (`fit`, sampling included) | {r['d3rlpy_sps']:.1f} gradient steps/s |

Ratio robot_rl / d3rlpy: {r['ours_sps'] / r['d3rlpy_sps']:.2f}x. Both run the same three networks (twin critics,
value, actor) with Adam; robot_rl evaluates the twin critics as one batched ensemble matmul
(`robot_rl.nets.EnsembleMLP`) and samples batches with numpy fancy indexing.
"""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    return text


@pytest.mark.bench
def test_offline_throughput():
    r = run(episodes=20, steps=100, repeats=1)
    assert r["load_tps"] > 10_000 and r["relabel_tps"] > 100_000 and r["ours_sps"] > 5
    print(r)


if __name__ == "__main__":
    result = run(episodes=int(sys.argv[1]) if len(sys.argv) > 1 else 200, steps=300, repeats=3)
    print(write_results(result))
