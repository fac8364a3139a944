"""Modules stay readable (issue 16): no module in robot_rl/ over 520 lines, no function over 80 lines.

A function may stay longer only when its docstring says why, with the phrase ``One function on purpose`` (a hot
path where each extra call costs time every control step, a numba kernel that must be one native call). Lines are
counted from the ``def`` line to the function's last line (decorators excluded); nested functions count on their
own and inside the function that holds them.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PKG = REPO / "robot_rl"
MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 520
MARKER = "One function on purpose"


def long_functions(source: str, name: str = "<source>") -> list[str]:
    """``name:line function (n lines)`` of every function over ``MAX_FUNCTION_LINES`` without the marker."""
    out = []
    for node in ast.walk(ast.parse(source, name)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            n = node.end_lineno - node.lineno + 1
            if n > MAX_FUNCTION_LINES and MARKER not in (ast.get_docstring(node) or ""):
                out.append(f"{name}:{node.lineno} {node.name} ({n} lines)")
    return out


def _sources() -> list[tuple[str, str]]:
    files = sorted(PKG.rglob("*.py"))
    assert files, f"no modules under {PKG}"
    return [(str(f.relative_to(REPO)), f.read_text(encoding="utf-8")) for f in files]


def test_no_function_over_80_lines_without_a_reason():
    bad = [hit for name, src in _sources() for hit in long_functions(src, name)]
    assert not bad, (f"functions over {MAX_FUNCTION_LINES} lines: split them into named helpers, or say why one "
                     f"function is better in the docstring with the phrase {MARKER!r}:\n  " + "\n  ".join(bad))


def test_no_module_over_520_lines():
    bad = [f"{name} ({n} lines)" for name, src in _sources() if (n := len(src.splitlines())) > MAX_MODULE_LINES]
    assert not bad, (f"modules over {MAX_MODULE_LINES} lines: move a coherent part into a module of its own:\n  "
                     + "\n  ".join(bad))


def test_checker_counts_from_def_to_end_and_honours_the_marker():
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES - 1))
    fits = f"@decorator\ndef fits():\n{body}"  # def + 79 body lines = 80
    too_long = f"def too_long():\n{body}    return x0\n"
    reason = f'def kept():\n    """{MARKER}: a reason."""\n{body}'
    nested = f"def outer():\n    def inner():\n{''.join('    ' + line + chr(10) for line in body.splitlines())}" \
             f"        return x0\n    return inner\n"
    assert long_functions(fits) == []
    assert long_functions(too_long) == ["<source>:1 too_long (81 lines)"]
    assert long_functions(reason) == []
    assert long_functions(nested) == ["<source>:1 outer (83 lines)", "<source>:2 inner (81 lines)"]
