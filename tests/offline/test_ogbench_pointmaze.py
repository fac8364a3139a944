"""Learning (slow): offline goal-conditioned RL on an external benchmark, OGBench's pointmaze-medium-navigate, small.

The small version of bench/bench_ogbench.py (full size in bench/results/ogbench.md): EPISODES episodes of OGBench's
navigate data, generated with OGBench 1.2.2's own maze env and BFS oracle (bench/ogbench_pointmaze.py), HIQL from
its bench config as it is (3 x 256) for STEPS gradient steps, scored with OGBench's own evaluation (its five tasks from
its own reset; success = the point within 1 m of the goal in 1000 steps).

Measured (100 episodes, 256-wide nets, 4 episodes per task): 1 task solved at 1000 steps, then 2-3 tasks (tasks 2 and 5
every time, task 1 at some checkpoints) at 2000, 3000, 4000, 6000 and 8000 steps; 128-wide nets solved 1 task in 4000
steps. The full-size run solves all 5 (bench/results/ogbench.md). Asserted: at least 2 tasks reached on >= 3 of 4
episodes after STEPS steps.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from robot_rl.train.config import load_experiment

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import ogbench_pointmaze as pm  # noqa: E402 - bench/, needs ogbench (requirements-dev.txt)

EPISODES, STEPS, EPISODES_PER_TASK = 100, 2000, 4


def _policy(module):
    def act(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(x)[None])[0].numpy()

    return act


@pytest.mark.slow
def test_hiql_reaches_ogbench_pointmaze_goals(tmp_path):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    pm.generate(tmp_path / "d", episodes=EPISODES, progress=False)
    config = ROOT / "bench" / "configs" / "hiql_ogbench_pointmaze.yaml"
    cfg = load_experiment(config, [f"dataset.path={tmp_path / 'd'}"])
    learner = cfg.make_learner()
    learner.begin_segment(0)
    learner.train_until(STEPS)
    ev = pm.evaluate(_policy(learner.policy_module().eval()), episodes_per_task=EPISODES_PER_TASK, seed=777)
    print(f"OGBench pointmaze-medium success after {STEPS} HIQL steps on {EPISODES} episodes: {ev}")
    assert sum(rate >= 0.75 for rate in ev["tasks"]) >= 2, ev
