# Two commands for a fresh machine with only python3 and make:
#   make demo   create .venv, install, run examples/quickstart.py against the embedded stub gateway
#   make test   create .venv, install, run lint, type checks and the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The reference x402 package pins solana<0.40, so it lives in an environment of its own;
# the interoperability tests run it as separate processes.
X402_VENV  := .venv-x402
X402_STAMP := $(X402_VENV)/.installed
X402_PKG   := x402[svm,flask,requests,httpx]==2.25.0
# The official JavaScript packages (@solana/kit, @x402/*), pinned by package-lock.json and
# installed with npm ci for the interoperability tests in tests/test_js_interop.py.
JS_DIR   := tests/interop/js
JS_STAMP := $(JS_DIR)/node_modules/.installed

.PHONY: demo test lint typecheck unit bench gateway clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

$(X402_STAMP): Makefile
	$(PYTHON) -m venv $(X402_VENV)
	$(X402_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(X402_VENV)/bin/python -m pip install --quiet "$(X402_PKG)"
	touch $(X402_STAMP)

$(JS_STAMP): $(JS_DIR)/package.json $(JS_DIR)/package-lock.json
	cd $(JS_DIR) && npm ci --no-audit --no-fund
	touch $(JS_STAMP)

demo: $(STAMP)
	$(BIN)/python examples/quickstart.py

test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP) $(X402_STAMP) $(JS_STAMP)
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_payment.py
	$(BIN)/python benchmarks/bench_journal.py

gateway: $(STAMP)
	$(BIN)/python -m stub_gateway --host 127.0.0.1 --port 8402

clean:
	rm -rf $(VENV) $(X402_VENV) $(JS_DIR)/node_modules .pytest_cache .mypy_cache .ruff_cache .hypothesis
