"""docs/configuration.md and docs/cli.md are generated from the code; they must match what the code says now."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_generated_reference_docs_are_current(tmp_path):
    code = (
        "import os, sys; os.environ['COLUMNS'] = '100'; from pathlib import Path; "
        "from robot_rl.docgen import write_docs; write_docs(Path(sys.argv[1]))"
    )
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120,
                         cwd=REPO)
    assert res.returncode == 0, res.stderr[-2000:]
    for rel in ("docs/configuration.md", "docs/cli.md"):
        fresh = (tmp_path / rel).read_text()
        current = (REPO / rel).read_text()
        assert fresh == current, f"{rel} is stale: run `.venv/bin/python -m robot_rl.docgen`"


@dataclass(frozen=True)
class Sub:
    gain: float = 2.0
    """Gain [N m s/rad]."""


@dataclass(frozen=True)
class Top:
    period_s: float = 0.02
    """Control period [s]."""
    sub: Sub = Sub()


def test_field_docs_reads_docstrings_under_fields():
    from robot_rl.docgen import field_docs, schema_table

    assert field_docs(Top) == {"period_s": "Control period [s]."}
    rows = schema_table(Top)
    assert rows[0] == "| `period_s` | float | `0.02` | Control period [s]. |"
    assert rows[-1] == "| `sub.gain` | float | `2.0` | Gain [N m s/rad]. |"
