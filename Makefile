# cyberclaims: `make run` starts the whole system, `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The suite on two workers, one per core; tests/conftest.py (SuiteScheduling) says how they
# share it.
WORKERS := -n 2

.PHONY: install lock run test test-fast lint bench demo clean

install: $(STAMP)

# Installs exactly the locked versions, each checked against its hashes, then the project
# itself without resolving anything again (--no-deps).
$(STAMP): pyproject.toml requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# After a change to the dependencies in pyproject.toml: resolve them again into the lock files
# (the dev lock is constrained by the runtime one, so both pin the same versions), commit both.
# tests/deploy/test_lock.py fails while they disagree with pyproject.toml.
lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes \
	    --custom-compile-command "make lock" --quiet -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 \
	    --generate-hashes --custom-compile-command "make lock" --quiet \
	    -c requirements.lock -o requirements-dev.lock

run: $(STAMP)
	$(BIN)/cyberclaims dev

test: $(STAMP)
	$(BIN)/python -m tests.setup
	$(BIN)/ruff check .
	$(BIN)/mypy shared services cyberclaims bench
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -m 'not bench' $(WORKERS) --durations=20

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m 'not slow and not bench' $(WORKERS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy shared services cyberclaims bench
	$(BIN)/lint-imports

# The quick run first (tests/bench/test_smoke.py, about 4 minutes): a broken benchmark fails
# before the long full run, and a loaded machine never fails `make test` with it.
bench: $(STAMP)
	$(BIN)/python -m pytest -m bench tests/bench/test_smoke.py
	$(BIN)/python -m bench

demo: $(STAMP)
	$(BIN)/cyberclaims demo
	@echo "Loss experience: '$(BIN)/cyberclaims simulate --policies 50 --years 2 --seed 1' drives a synthetic book through the APIs; then open http://127.0.0.1:8006/insights (docs/insights.md)."

clean:
	rm -rf $(VENV) .data
