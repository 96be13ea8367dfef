# Every target creates .venv on first use and installs what it needs into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEV_STAMP := $(VENV)/.installed-dev
DEMO_STAMP := $(VENV)/.installed-demo

.DEFAULT_GOAL := help
.PHONY: help test lint demo format clean

help:
	@echo "make test   run the test suite with coverage (SQLite/fakeredis unless TEST_* URLs are set)"
	@echo "make demo   run the demo API on http://127.0.0.1:8000"
	@echo "make lint   ruff + mypy --strict"

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required; set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev,postgres]'
	@touch $@

$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev,postgres]'
	@touch $@

test: $(DEV_STAMP)
	rm -f .coverage .coverage.*
	$(BIN)/python -m coverage run -m pytest $(PYTEST_ARGS)
	$(BIN)/python -m coverage combine --quiet
	$(BIN)/python -m coverage report

lint: $(DEV_STAMP)
	$(BIN)/ruff check heygen_conventions tests examples benchmarks
	$(BIN)/ruff format --check heygen_conventions tests examples benchmarks
	$(BIN)/mypy --strict heygen_conventions

format: $(DEV_STAMP)
	$(BIN)/ruff format heygen_conventions tests examples benchmarks
	$(BIN)/ruff check --fix heygen_conventions tests examples benchmarks

demo: $(DEMO_STAMP)
	$(BIN)/python -m examples.minimal_app

clean:
	rm -rf $(VENV) .coverage .coverage.* .mypy_cache .ruff_cache .pytest_cache
