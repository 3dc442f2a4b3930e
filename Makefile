# Two commands a new user needs: `make run` (install + main job) and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install run test lint bench-import bench-transfer bench-predictors bench-optimize

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# Main job: migrate the database, import the reference data, serve the API (docs at /docs).
run: install
	$(BIN)/edgeopt up

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q

bench-import: install
	$(BIN)/python benchmarks/import_reference.py --json benchmarks/results/import_reference_sqlite.json

bench-transfer: install
	$(BIN)/python benchmarks/transfer.py

bench-predictors: install
	$(BIN)/python benchmarks/predictor_speed.py --json benchmarks/results/predictor_speed.json

bench-optimize: install
	$(BIN)/python benchmarks/optimize.py
