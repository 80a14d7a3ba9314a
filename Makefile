# Two commands do all the set-up on a fresh machine with Python 3.11 (no Docker needed):
#   make run    the whole embedded stack in the foreground (Ctrl-C stops it)
#   make test   the whole suite against real servers
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean migration

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
