# Two commands do all the set-up on a fresh machine with Python 3.11 (no Docker needed):
#   make run    the whole embedded stack in the foreground (Ctrl-C stops it)
#   make test   the whole suite against real servers
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast lint bench clean migration

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/kassa run

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest

# The suite without the full-stack end-to-end tests (everything under tests/e2e is marked e2e).
test-fast: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest -m "not e2e"

# make migration m="add loyalty points": autogenerates migrations/versions/<next number>_….py
# from the models against a throwaway embedded PostgreSQL (no database needed).
migration: $(STAMP)
	@test -n "$(m)" || { echo 'usage: make migration m="add loyalty points"' >&2; exit 2; }
	$(BIN)/python -m tooling.make_migration "$(m)"

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .kassa .pytest_cache

bench: $(STAMP)
	$(BIN)/python -m bench.checkout_round_trips
