# Two commands on a fresh machine: `make demo` and `make test`. Each creates .venv if missing and
# installs what it needs (a stamp per dependency set, refreshed when pyproject.toml changes).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q --disable-pip-version-check

.PHONY: demo test lint typecheck pytest soak bench bench-quick serve clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) -U "pip>=25.1"

$(VENV)/.demo-stamp: pyproject.toml | $(PY)
	$(PIP) -e . --group cli
	touch $@

$(VENV)/.dev-stamp: pyproject.toml | $(PY)
	$(PIP) -e ".[http,cluster]" --group test --group lint --group bench --group cli
	touch $@

demo: $(VENV)/.demo-stamp
	$(PY) main.py demo

lint: $(VENV)/.dev-stamp
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: $(VENV)/.dev-stamp
	$(PY) -m mypy

pytest: $(VENV)/.dev-stamp
	$(PY) -m pytest -q -m "not soak"

test: lint typecheck pytest

soak: $(VENV)/.dev-stamp
	$(PY) -m pytest -q -m soak --timeout 1800

bench: $(VENV)/.dev-stamp
	$(PY) main.py bench

bench-quick: $(VENV)/.dev-stamp
	$(PY) main.py bench --quick

serve: $(VENV)/.dev-stamp
	$(PY) main.py serve

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
