# Two commands a new user needs: `make run` (install + main job) and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install run test test-setup lint bench-import bench-transfer bench-suite bench-predictors bench-optimize

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

# What the tests need outside .venv: the local PostgreSQL running, Debian's chromium and
# chromium-driver installed (apt-get, only when missing). CI runs this same step.
test-setup:
	scripts/test-setup.sh

test: lint test-setup
	$(BIN)/pytest -q

# Figures that depend on the machine go under benchmarks/results/<hardware id>/; figures
# computed on the reference data go under benchmarks/results/reference/.
HARDWARE_ID = $(shell $(BIN)/python -c "from devices.measure import hardware_id, hardware_identity; print(hardware_id(hardware_identity()))")
MACHINE_RESULTS = benchmarks/results/$(HARDWARE_ID)

bench-import: install
	$(BIN)/python benchmarks/import_reference.py --json $(MACHINE_RESULTS)/import_reference_sqlite.json

bench-transfer: install
	$(BIN)/python benchmarks/transfer.py --out benchmarks/results/reference

bench-suite: install
	$(BIN)/python benchmarks/transfer_suite.py --out benchmarks/results/reference

bench-predictors: install
	mkdir -p $(MACHINE_RESULTS)
	$(BIN)/python benchmarks/predictor_speed.py --json $(MACHINE_RESULTS)/predictor_speed.json

bench-optimize: install
	$(BIN)/python benchmarks/optimize.py --out benchmarks/results/reference
