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
	@echo "make demo   run the example video platform API on http://127.0.0.1:8000"
	@echo "make lint   ruff + mypy --strict"

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required; set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev,postgres]'
	@touch $@

$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[example,postgres,testing]'
	@touch $@

test: $(DEV_STAMP)
	rm -f .coverage .coverage.*
	$(BIN)/python -m coverage run -m pytest $(PYTEST_ARGS)
	$(BIN)/python -m coverage combine --quiet
	$(BIN)/python -m coverage report

lint: $(DEV_STAMP)
	$(BIN)/ruff check heygen_conventions tests examples benchmarks
	$(BIN)/ruff format --check heygen_conventions tests examples benchmarks
	$(BIN)/mypy --strict heygen_conventions examples

format: $(DEV_STAMP)
	$(BIN)/ruff format heygen_conventions tests examples benchmarks
	$(BIN)/ruff check --fix heygen_conventions tests examples benchmarks

# Migrates ./video_app.db (or HEYGEN_DATABASE_URL), seeds the demo data, serves on :8000.
demo: $(DEMO_STAMP)
	$(BIN)/python -m examples.video_app

clean:
	rm -rf $(VENV) .coverage .coverage.* .mypy_cache .ruff_cache .pytest_cache
