# Two commands on a fresh machine: `make run` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test lint install clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

# Types and lint first: a new mypy --strict or ruff error fails the suite (and CI) before any test runs.
lint: $(STAMP)
	$(PY) -m mypy
	$(PY) -m ruff check .

# Three workers (pytest-xdist) on CI's two cores: most tests wait on subprocesses, sockets and the disk, so a
# third worker uses the time the other two wait (433 -> 303 s measured). Every test uses free ports, temp dirs
# and its own PostgreSQL schema; setup.cfg's --dist loadgroup keeps a module's shared stack on one worker.
PYTEST_WORKERS ?= 3

test: lint
	$(PY) -m pytest -n $(PYTEST_WORKERS)

run: $(STAMP)
	bash scripts/run.sh

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis .mypy_cache .ruff_cache *.egg-info
