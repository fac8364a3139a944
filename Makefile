# robot_rl: `make test`, `make demo`, `make bench`. Each target sets up the virtual environment it needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.robot_rl-installed
# Keep ROS 2 traffic on this machine; tests pick their own ROS_DOMAIN_ID per run.
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST
export ROS_DOMAIN_ID ?= $(shell echo $$(( ($$$$ % 100) + 100 )))
export PYTHONDONTWRITEBYTECODE := 1
PYTEST_ARGS ?=
PYTEST_WORKERS ?= 2
PYTEST_MARK ?=
MARK_AND := $(if $(PYTEST_MARK), and ($(PYTEST_MARK)),)

.PHONY: venv test lint demo bench models colcon clean help

help:
	@echo "make test   - set up .venv, lint (ruff, import contracts), run the test suite (fast + learning on 2 workers, then ROS tests)"
	@echo "make demo   - set up .venv and run the end-to-end workflow"
	@echo "make bench  - set up .venv (+ bench-only peers) and run the benchmarks in bench/"
	@echo "make models - rebuild the shipped models in models/ from their configs (see models/README.md)"

$(STAMP): requirements.txt requirements-dev.txt requirements-scale.txt requirements-assets.txt setup.py setup.cfg
	@# Headless MuJoCo rendering (videos) uses OSMesa: install Debian's libosmesa6 when we can, else say so.
	@if ! ldconfig -p 2>/dev/null | grep -q libOSMesa; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libosmesa6) >/dev/null; \
	  else echo "note: install libosmesa6 (apt-get install libosmesa6) for headless video rendering"; fi; fi
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt -r requirements-dev.txt \
	  -r requirements-scale.txt
	$(PY) -m pip install --disable-pip-version-check -q --no-deps -r requirements-assets.txt
	$(PY) -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	@touch $(STAMP)

venv: $(STAMP)

lint: venv
	$(VENV)/bin/ruff check .
	@# import contracts (.importlinter): layers without cycles, a torch-free robot side, rclpy only in nodes
	$(VENV)/bin/lint-imports --no-cache

# Two passes: everything but the ROS tests on PYTEST_WORKERS processes (pytest-xdist; whole files per worker, so
# module fixtures are built once), then the ROS tests alone, one at a time (their latency and timing checks want
# the CPU to themselves). PYTEST_MARK narrows both (e.g. "not slow"); PYTEST_ARGS goes to both (paths, -k, -x).
# Both passes always run; exit status 5 (no test selected in a pass) is not a failure.
test: venv lint
	@rc=0; \
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile -m "not ros$(MARK_AND)" $(PYTEST_ARGS) \
	  || { e=$$?; [ $$e = 5 ] || rc=$$e; }; \
	$(PY) -m pytest -q -m "ros$(MARK_AND)" $(PYTEST_ARGS) || { e=$$?; [ $$e = 5 ] || rc=$$e; }; \
	exit $$rc

demo: venv
	$(VENV)/bin/robot-rl demo

bench: venv
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-bench.txt
	$(PY) -m pip install --disable-pip-version-check -q --no-deps d3rlpy==2.8.1
	@# the mjbatch peer pins an older mujoco: its own venv (bench/peer_mjbatch_go2.py)
	@test -x .venv-mjbatch/bin/python || $(PYTHON) -m venv .venv-mjbatch
	.venv-mjbatch/bin/python -m pip install --disable-pip-version-check -q -r requirements-bench-mjbatch.txt
	.venv-mjbatch/bin/python -m pip install --disable-pip-version-check -q --no-deps -r requirements-assets.txt
	$(PY) -m pytest -q -m bench bench/ $(PYTEST_ARGS)

models: venv
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash scripts/make_models.sh

colcon: venv
	rm -rf build install log
	$(VENV)/bin/colcon build --base-paths . --packages-select robot_rl

clean:
	rm -rf build install log .pytest_cache
