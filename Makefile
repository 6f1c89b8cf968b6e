# Backbone: the two commands are `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
HOST ?= 127.0.0.1
PORT ?= 8000
# Every command reads the same settings: without BACKBONE_ISSUER, the issuer (and the audit log's
# name) is http://127.0.0.1:$(PORT) for the server and the CLI alike.
export PORT
PG_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test

.PHONY: run test test-fast test-sqlite test-postgres test-browser screenshots bench lint format typecheck migrate demo clean venv

venv: $(DEV_STAMP)

# The service's own dependencies for `make run`; the test and lint tools on top for the rest.
# Bytecode is compiled on first import rather than for every module of every package at install.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Backbone needs Python 3.11 or newer")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --no-compile -e .
	@touch $(STAMP)

# One resolution for both (the service's dependencies are among the tools'), so a first
# `make test` does not install twice.
$(DEV_STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Backbone needs Python 3.11 or newer")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --no-compile -e '.[dev]'
	@touch $(STAMP) $(DEV_STAMP)

## make run: install, migrate the embedded SQLite database, seed the demo initiative, serve on 127.0.0.1:8000
run: $(STAMP)
	$(BIN)/backbone migrate
	$(BIN)/backbone seed-demo
	$(BIN)/backbone serve --host $(HOST) --port $(PORT)

## make test: the whole suite on SQLite (with a coverage report), then on PostgreSQL (skipped with
## a notice if none is running, required when BACKBONE_TEST_REQUIRE_POSTGRES=1, as in CI)
test: $(DEV_STAMP)
	$(BIN)/python -m pytest -q -p xdist -n 2 --dist loadfile --cov --cov-report=term
	BACKBONE_TEST_DATABASE=postgres BACKBONE_TEST_POSTGRES_URL='$(PG_URL)' \
		$(BIN)/python -m pytest -q -p xdist -n 2 --dist loadfile

## make test-fast: the inner loop: SQLite only, without the tests marked slow or process
test-fast: $(DEV_STAMP)
	$(BIN)/python -m pytest -q -p xdist -n 2 --dist loadfile -m "not slow and not process"

test-sqlite: $(DEV_STAMP)
	$(BIN)/python -m pytest -q -p xdist -n 2 --dist loadfile

test-postgres: $(DEV_STAMP)
	BACKBONE_TEST_DATABASE=postgres BACKBONE_TEST_POSTGRES_URL='$(PG_URL)' \
		$(BIN)/python -m pytest -q -p xdist -n 2 --dist loadfile

## make test-browser: the browser tests alone (Playwright driving Debian's chromium)
test-browser: $(DEV_STAMP)
	$(BIN)/python -m pytest -q tests/browser

## make screenshots: the browser tests, keeping the README's screenshots in docs/screenshots/
screenshots: $(DEV_STAMP)
	BACKBONE_TEST_SCREENSHOTS=1 $(BIN)/python -m pytest -q tests/browser

bench: $(DEV_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(DEV_STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

migrate: $(STAMP)
	$(BIN)/backbone migrate

demo: $(STAMP)
	$(BIN)/backbone demo --url $${BACKBONE_URL:-http://$(HOST):$(PORT)}

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.*
