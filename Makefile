# The two commands: `make run` (embedded default on :3000) and `make test` (lint, types, tests).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: run test lint types pytest chromium bench clean

$(RUN_STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $@

$(DEV_STAMP): $(RUN_STAMP) requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

run: $(RUN_STAMP)
	$(PY) -m devstack

test: $(DEV_STAMP) chromium
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PY) -m pytest $(ARGS)

# Browser tests drive Debian's Chromium (browsers cannot be downloaded by Playwright here).
chromium:
	@command -v chromium >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
		echo "chromium could not be installed: browser tests will be skipped"

lint: $(DEV_STAMP)
	$(PY) -m ruff check .

types: $(DEV_STAMP)
	$(PY) -m mypy

# Benchmarks drive the service with wrk (Debian's package), against the PostgreSQL and Redis on 127.0.0.1.
bench: $(DEV_STAMP)
	@command -v wrk >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null)
	$(PY) -m bench.webhooks $(ARGS)

clean:
	rm -rf $(VENV) var
