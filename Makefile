# Two commands for a fresh machine with only python3 and make:
#   make demo   create .venv, install the SDK and its gateway extra, run examples/quickstart.py
#   make test   create .venv, install the development tools too, run lint, type checks and tests
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The interpreter's check, and one stamp per set of extras: `make demo` installs only what the
# demo needs (the gateway extra), `make test` the development tools as well.
CHECKED     := $(VENV)/.python-checked
DEMO_STAMP  := $(VENV)/.installed-gateway
DEV_STAMP   := $(VENV)/.installed-dev
NEEDS_311   := import sys; sys.exit(sys.version_info < (3, 11))
# compat: a .pth file puts the checkout on sys.path, which type checkers read (setuptools'
# default import-hook finder is invisible to mypy and pyright outside the repository).
PIP_INSTALL := $(BIN)/python -m pip install --config-settings editable_mode=compat -e
# The reference x402 package pins solana<0.40, so it lives in an environment of its own;
# the interoperability tests run it as separate processes.
X402_VENV  := .venv-x402
X402_STAMP := $(X402_VENV)/.installed
X402_PKG   := x402[svm,flask,requests,httpx,mcp,extensions]==2.25.0
# Its MCP code is mcp 1.x's (FastMCP, which mcp 2 renamed); this project's own side runs mcp 2.
X402_PINS  := mcp>=1.25,<2
# The official JavaScript packages (@solana/kit, @x402/*), pinned by package-lock.json and
# installed with npm ci for the interoperability tests in tests/test_js_interop.py.
JS_DIR   := tests/interop/js
JS_STAMP := $(JS_DIR)/node_modules/.installed
# The reviewer console's browser tests (tests/test_console_browser.py) drive Debian's chromium
# through its chromedriver, installed with apt-get when missing (as root, or with sudo when it
# needs no password): browsers downloaded from the internet are not used. When they cannot be
# installed the browser tests skip, and fail under CI=true.
CHROMIUM     ?= /usr/bin/chromium
CHROMEDRIVER ?= /usr/bin/chromedriver
APT_GET      ?= apt-get
AS_ROOT      ?= $(shell [ "$$(id -u)" = 0 ] || echo sudo -n)
APT_INSTALL  := env DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y chromium chromium-driver
export CHROMIUM CHROMEDRIVER
# The PostgreSQL journal's tests (tests/test_journal_stores.py, tests/test_fleet.py) start a real
# server from Debian's postgresql package (/usr/lib/postgresql/<version>/bin), installed with
# apt-get when missing, the same way. tests/postgres_server.py starts it as the package's
# `postgres` system user when the tests run as root (PostgreSQL refuses to run as root). When it
# cannot be installed those tests skip, and fail under CI=true. pgbouncer (the same way): the
# journal behind a pooler in each mode (tests/test_journal_pgbouncer.py).
PG_INSTALL   := env DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y postgresql pgbouncer

.PHONY: demo test lint typecheck unit browser postgres bench gateway clean FORCE

FORCE:

# Runs every time; rebuilds .venv when its python is missing, broken or older than 3.11 (say, a
# .venv left by a failed `make demo PYTHON=python3.10`), and refuses such a $(PYTHON).
$(CHECKED): FORCE
	@if ! $(BIN)/python -c '$(NEEDS_311)' >/dev/null 2>&1; then \
	    if [ -e $(VENV) ]; then \
	        echo "make: $(VENV) was made by a Python older than 3.11 or one that no longer runs: rebuilding it"; \
	        rm -rf $(VENV); \
	    fi; \
	    if ! $(PYTHON) -c '$(NEEDS_311)' >/dev/null 2>&1; then \
	        echo "make: $(PYTHON) is not Python 3.11 or newer; run make PYTHON=python3.11 (or newer)" >&2; \
	        exit 1; \
	    fi; \
	    echo "make: creating $(VENV) with $(PYTHON)"; \
	    $(PYTHON) -m venv $(VENV) && \
	    $(BIN)/python -m pip install --quiet --upgrade pip && \
	    touch $@; \
	fi; \
	[ -e $@ ] || touch $@

$(DEMO_STAMP): $(CHECKED) pyproject.toml
	@echo "make: installing human-rpc-sdk[gateway] into $(VENV) (the SDK, Flask, waitress, base58)"
	$(PIP_INSTALL) ".[gateway]"
	touch $@

$(DEV_STAMP): $(CHECKED) pyproject.toml
	@echo "make: installing human-rpc-sdk[dev] into $(VENV) (the gateway extra, pytest, hypothesis, ruff, mypy, psycopg, pytest-postgresql)"
	$(PIP_INSTALL) ".[dev]"
	touch $@

$(X402_STAMP): Makefile
	$(PYTHON) -m venv $(X402_VENV)
	$(X402_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(X402_VENV)/bin/python -m pip install --quiet "$(X402_PKG)" "$(X402_PINS)"
	touch $(X402_STAMP)

$(JS_STAMP): $(JS_DIR)/package.json $(JS_DIR)/package-lock.json
	cd $(JS_DIR) && npm ci --no-audit --no-fund
	touch $(JS_STAMP)

# Runs every time (a check of two files when they are there); never fails the build.
browser:
	@if [ ! -x "$(CHROMIUM)" ] || [ ! -x "$(CHROMEDRIVER)" ]; then \
	    echo "make: installing chromium and chromium-driver with apt-get (the browser tests)"; \
	    $(AS_ROOT) $(APT_INSTALL) || \
	    { $(AS_ROOT) $(APT_GET) update && $(AS_ROOT) $(APT_INSTALL); } || \
	    echo "make: could not install chromium and chromium-driver; the browser tests will" \
	        "skip (and fail under CI=true)" >&2; \
	fi

# Runs every time (a look for pg_ctl and pgbouncer); never fails the build.
postgres:
	@if ! ls /usr/lib/postgresql/*/bin/pg_ctl /usr/sbin/pgbouncer >/dev/null 2>&1; then \
	    echo "make: installing postgresql and pgbouncer with apt-get (the PostgreSQL journal's tests)"; \
	    $(AS_ROOT) $(PG_INSTALL) || \
	    { $(AS_ROOT) $(APT_GET) update && $(AS_ROOT) $(PG_INSTALL); } || \
	    echo "make: could not install postgresql; the PostgreSQL journal's tests will skip" \
	        "(and fail under CI=true)" >&2; \
	fi

demo: $(DEMO_STAMP)
	$(BIN)/python examples/quickstart.py

test: lint typecheck unit

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(DEV_STAMP)
	$(BIN)/mypy

unit: $(DEV_STAMP) $(X402_STAMP) $(JS_STAMP) browser postgres
	$(BIN)/pytest

# bench_payment.py races AutoAgent against the reference x402 client, run in $(X402_VENV).
bench: $(DEV_STAMP) $(X402_STAMP)
	$(BIN)/python benchmarks/bench_payment.py --x402-python $(X402_VENV)/bin/python
	$(BIN)/python benchmarks/bench_journal.py
	$(BIN)/python benchmarks/bench_drivers.py

gateway: $(DEMO_STAMP)
	$(BIN)/python -m stub_gateway --host 127.0.0.1 --port 8402

clean:
	rm -rf $(VENV) $(X402_VENV) $(JS_DIR)/node_modules .pytest_cache .mypy_cache .ruff_cache .hypothesis
