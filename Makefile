# The two commands: `make run` (embedded default on :3000) and `make test` (lint, types, tests).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev

JS_DEPS := tests/js/node_modules/.package-lock.json

.PHONY: run test lint types pytest chromium nginx bench soak clean

$(RUN_STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $@

$(DEV_STAMP): $(RUN_STAMP) requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

run: $(RUN_STAMP)
	$(PY) -m devstack

test: $(DEV_STAMP) chromium nginx $(JS_DEPS)
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PY) -m pytest $(ARGS)

# Browser tests drive Debian's Chromium (browsers cannot be downloaded by Playwright here).
chromium:
	@command -v chromium >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
		echo "chromium could not be installed: browser tests will be skipped"

# The reference's JavaScript example runs on the real socket.io-client (npm registry; Node.js from Debian).
$(JS_DEPS): tests/js/package.json tests/js/package-lock.json
	@command -v npm >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null)
	cd tests/js && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# The topology test puts Debian's nginx in front of the web and realtime processes, each in a network
# namespace of its own (iproute2), reaching the shared PostgreSQL and Redis through socat relays.
nginx:
	@command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || [ "$$(id -u)" != 0 ] || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null) || \
		echo "nginx could not be installed: the topology test will be skipped"
	@(command -v socat && command -v ip) >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq socat iproute2 >/dev/null) || \
		echo "socat or iproute2 could not be installed: the topology test will be skipped"

lint: $(DEV_STAMP)
	$(PY) -m ruff check .

types: $(DEV_STAMP)
	$(PY) -m mypy

# Benchmarks drive the service with wrk (Debian's package), against the PostgreSQL and Redis on 127.0.0.1.
bench: $(DEV_STAMP)
	@command -v wrk >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null)
	$(PY) -m bench.webhooks $(ARGS)

# The soak: minutes of mixed traffic while the worker is SIGKILLed at random (tests/test_soak.py; the
# result goes to docs/BENCHMARKS.md). SOAK_SECONDS sets the length (300).
soak: $(DEV_STAMP)
	SOAK_SECONDS=$${SOAK_SECONDS:-300} $(PY) -m pytest tests/test_soak.py -q -s -p no:cacheprovider $(ARGS)

clean:
	rm -rf $(VENV) var tests/js/node_modules
