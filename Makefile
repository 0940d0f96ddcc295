# cyberclaims: `make run` starts the whole system, `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-fast lint bench demo clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/cyberclaims dev

test: $(STAMP)
	$(BIN)/python -m tests.setup
	$(BIN)/ruff check .
	$(BIN)/mypy shared services cyberclaims
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -m 'not bench'

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m 'not slow and not bench'

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy shared services cyberclaims
	$(BIN)/lint-imports

# The quick run first (tests/bench/test_smoke.py, about 2 minutes): a broken benchmark fails
# before the long full run, and a loaded machine never fails `make test` with it.
bench: $(STAMP)
	$(BIN)/python -m pytest -m bench tests/bench/test_smoke.py
	$(BIN)/python -m bench

demo: $(STAMP)
	$(BIN)/cyberclaims demo
	@echo "Loss experience: '$(BIN)/cyberclaims simulate --policies 50 --years 2 --seed 1' drives a synthetic book through the APIs; then open http://127.0.0.1:8006/insights (docs/insights.md)."

clean:
	rm -rf $(VENV) .data
