# `make run` starts the service on embedded backends; `make test` runs everything CI runs;
# `make bench` measures it on the real stack (BENCH_ARGS="--transfers 500 --service-dir ../other").
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint unit bench services-up services-down chromium

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# The fast loop: unit tests and the contract suites on the embedded adapters
# (SQLite, the embedded ledger, the in-process bus), no servers; seconds.
unit: $(STAMP)
	REQUIRE_REAL_BACKENDS= $(BIN)/pytest -q tests/unit tests/contract \
		-m "not real_backends and not slow and not tigerbeetle" -k "not cassandra and not kafka and not tigerbeetle"

test: lint chromium
	scripts/test-with-services $(BIN)/pytest $(PYTEST_ARGS)

# tests/e2e/test_docs_browser.py renders /docs in Debian's headless chromium; installed once, if missing.
chromium:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 chromium; }

# Starts the dev services it needs (and stops only those), TigerBeetle when TIGERBEETLE_BIN names one.
bench: $(STAMP)
	$(BIN)/python -m tests.benchmarks $(BENCH_ARGS)
