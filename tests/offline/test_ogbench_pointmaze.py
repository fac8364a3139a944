"""Learning (slow): offline goal-conditioned RL on an external benchmark, OGBench's pointmaze-medium-navigate, small.

The small version of bench/bench_ogbench.py (full size in bench/results/ogbench.md): EPISODES episodes of OGBench's
navigate data, generated with OGBench 1.2.2's own maze env and BFS oracle (bench/ogbench_pointmaze.py), HIQL from
its bench config with smaller nets for STEPS gradient steps, scored with OGBench's own evaluation (its five tasks from
its own reset; success = the point within 1 m of the goal in 1000 steps).
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

EPISODES, STEPS, EPISODES_PER_TASK = 100, 3000, 4


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
    cfg = load_experiment(ROOT / "bench" / "configs" / "hiql_ogbench_pointmaze.yaml",
                          [f"dataset.path={tmp_path / 'd'}", "hiql.hidden=[128,128]"])
    learner = cfg.make_learner()
    learner.begin_segment(0)
    learner.train_until(STEPS)
    ev = pm.evaluate(_policy(learner.policy_module().eval()), episodes_per_task=EPISODES_PER_TASK, seed=777)
    print(f"OGBench pointmaze-medium success after {STEPS} HIQL steps on {EPISODES} episodes: {ev}")
    assert ev["overall"] >= 0.5, ev
