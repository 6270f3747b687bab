# `make demo` and `make test` work on a fresh machine: each creates .venv,
# installs torch first (so pip does not pull a CUDA build on a CPU machine),
# then the project, then runs.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
# Keep Ray on loopback and quiet; see docs/operations.md.
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER := 0
export RAY_USAGE_STATS_ENABLED := 0

.PHONY: install demo test test-fast lint typecheck clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(TORCH_SPEC)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/onmodel run examples/coffee/storyboard.yaml

test: install
	$(BIN)/python -m pytest -m 'not gpu' $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest -m 'not gpu and not slow' $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check schemas orchestrator actors storage tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .onmodel
