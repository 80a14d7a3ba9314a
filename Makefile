# Two commands do all the set-up on a fresh machine with Python 3.11, 3.12 or 3.13 (no Docker
# needed):
#   make run    the whole embedded stack in the foreground (Ctrl-C stops it)
#   make test   the whole suite against real servers
# The first of python3.11, python3.12, python3.13, python3 that runs and is 3.11 to 3.13
# (PYTHON=… to choose another).
PYTHON ?= $(shell for p in python3.11 python3.12 python3.13 python3; do \
	$$p -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 13))' 2>/dev/null \
	&& { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast lint bench clean migration screenshots

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "Kassa needs Python 3.11, 3.12 or 3.13" >&2; exit 1; }
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
	$(BIN)/python -m bench.throughput --checkouts 100 --concurrency 20
	$(BIN)/python -m bench.latency --checkouts 50

# docs/support/*.png, taken of the real Temporal UI against a scripted mix of checkouts
# (tooling/screenshots.py). Needs Debian's Chromium: apt-get install -y chromium
SHOTS_STAMP := $(VENV)/.screenshots
$(SHOTS_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[screenshots]'
	touch $(SHOTS_STAMP)

screenshots: $(SHOTS_STAMP)
	$(BIN)/python -m tooling.screenshots
