# Every target bootstraps .venv itself, so a fresh clone needs only `make run`
# or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SEEDS ?= 1000
STEPS ?= 3000
FIRST_SEED ?= 0
PYTEST_WORKERS ?= auto

.PHONY: run test sim lint coverage bench build clean venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dev]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/graft node run --id 1 --port 9001 --data-dir ./graft-data/1

test: $(STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) -p no:cacheprovider tests

sim: $(STAMP)
	$(BIN)/python -m tests.simulation.run --seeds $(SEEDS) --steps $(STEPS) --first-seed $(FIRST_SEED)

lint: $(STAMP)
	$(BIN)/ruff check graft tests bench twisted
	$(BIN)/ruff format --check graft tests bench twisted
	$(BIN)/mypy -p graft

coverage: $(STAMP)
	$(BIN)/coverage run -m pytest -p no:cacheprovider tests
	$(BIN)/coverage report

bench: $(STAMP)
	$(BIN)/python -m bench.core_throughput
	$(BIN)/python -m bench.storage_append
	$(BIN)/python -m bench.kv_snapshot
	$(BIN)/python -m bench.http_load

build: $(STAMP)
	$(BIN)/python -m build

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .coverage graft-data
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
