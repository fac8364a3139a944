"""The product documents itself: it cites no document outside the repository, docs/reliability.md points at tests
that exist, and every benchmark result says which CPU, load and commit it came from."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("robot_rl", "docs", "bench", "tests", "config", "launch", "hardware", "scripts", "models")
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".txt", ".cfg", ".toml", ".xml", ".json", ".ini"}
# Planning notes kept next to the checkout, not in it: the product must not send a reader there.
OUTSIDE = re.compile(r"RELIABILITY(\.md| scenario)|\.\./shared\b|/work/shared\b")


def product_text_files():
    files = [p for p in ROOT.glob("*") if p.is_file() and (p.suffix in TEXT_SUFFIXES or p.name == "Makefile")]
    for top in SCANNED:
        files += [p for p in (ROOT / top).rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES
                  and "__pycache__" not in p.parts]
    return [p for p in files if p.resolve() != Path(__file__).resolve()]


def test_product_cites_no_document_outside_the_repository():
    files = product_text_files()
    assert any(p.name == "README.md" for p in files) and any(p.parent.name == "docs" for p in files)
    hits = []
    for p in files:
        for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1):
            if OUTSIDE.search(line):
                hits.append(f"{p.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not hits, "cite docs/reliability.md (scenario N) instead:\n" + "\n".join(hits)


def test_reliability_doc_has_every_scenario_and_its_tests_exist():
    text = (ROOT / "docs" / "reliability.md").read_text()
    assert [int(n) for n in re.findall(r"^## (\d+)\. ", text, re.M)] == list(range(1, 20))
    current, cited, missing = None, 0, []
    # `tests/x.py::name` names a file; a following bare `::name` refers to the last file named.
    for m in re.finditer(r"`(tests/[\w/]+\.py)?(?:::(\w+))?`", text):
        path, name = m.group(1), m.group(2)
        if path:
            current = path
            if not (ROOT / path).is_file():
                missing.append(path)
                continue
        if name:
            assert current, f"::{name} before any test file"
            cited += 1
            if not re.search(rf"^\s*def {name}\(", (ROOT / current).read_text(), re.M):
                missing.append(f"{current}::{name}")
    assert cited > 50, cited
    assert not missing, "docs/reliability.md cites tests that do not exist: " + ", ".join(missing)


def test_every_bench_result_names_cpu_load_and_commit():
    results = sorted((ROOT / "bench" / "results").glob("*.md"))
    assert results
    for p in results:
        text = p.read_text()
        cpu = re.search(r"^CPU: \S.*?(?=\n\n|\Z)", text, re.M | re.S)
        assert cpu, f"{p.name}: no 'CPU: ...' paragraph"
        assert "load" in cpu.group(0).lower(), f"{p.name}: the CPU paragraph gives no load"
        assert re.search(r"^Commit: [0-9a-f]{7,40}\b", text, re.M), f"{p.name}: no 'Commit: <hash>' line"


def load_machine():
    spec = importlib.util.spec_from_file_location("bench_machine", ROOT / "bench" / "_machine.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_machine_header_names_cpu_model_cores_load_and_commit(tmp_path):
    machine = load_machine()
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: X\nmodel name\t: Example CPU 9000 @ 3.0GHz\n\n"
                       "processor\t: 1\nmodel name\t: Example CPU 9000 @ 3.0GHz\n")
    assert machine.cpu_model(cpuinfo) == "Example CPU 9000 @ 3.0GHz"
    cpuinfo.write_text("processor\t: 0\n")
    assert machine.cpu_model(cpuinfo) == "unknown"
    assert machine.cpu_model(tmp_path / "absent") == "unknown"
    assert machine.git_commit(tmp_path).startswith("unknown")
    header = machine.machine_header()
    assert re.fullmatch(r"CPU: .+, \d+ logical cores, 1-min load average \S+ at the end of the run\n\n"
                        r"Commit: \S+", header), header


def test_every_bench_script_writes_the_machine_header():
    scripts = sorted((ROOT / "bench").glob("bench_*.py"))
    assert scripts
    without = [p.name for p in scripts if "machine_header()" not in p.read_text()]
    assert not without, f"results writers without machine_header(): {without}"
