"""metrics.csv holds numbers: numpy scalars (learners and envs report them) are written as plain numbers."""

import math

import numpy as np

from robot_rl.train.logger import CsvLog, read_csv


def test_numpy_floats_are_written_as_numbers(tmp_path):
    log = CsvLog(tmp_path / "metrics.csv")
    log.write({"step": 1, "fall_rate": np.float64(0.25), "loss": np.float32(1.5), "nan": float("nan")})
    (row,) = read_csv(tmp_path / "metrics.csv")
    assert float(row["fall_rate"]) == 0.25 and float(row["loss"]) == 1.5 and math.isnan(float(row["nan"]))
