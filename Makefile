# The two commands of the README: `make demo` and `make test`. Both set themselves up
# (virtualenv, packages); Kafka jars and the services are started by the code they run.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-stamp
# The native extension (native/: Rust, PyO3) is built with cargo from crates.io; rustup
# installs cargo under ~/.cargo/bin, which a non-login shell may not have on its PATH.
export PATH := $(HOME)/.cargo/bin:$(PATH)
NATIVE_STAMP := $(VENV)/.native-stamp
NATIVE_SOURCES := native/Cargo.toml native/Cargo.lock native/pyproject.toml \
	native/headwater_native.pyi $(wildcard native/src/*.rs)

.PHONY: setup demo test check unit up down clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $(STAMP)

$(NATIVE_STAMP): $(STAMP) $(NATIVE_SOURCES)
	@command -v cargo >/dev/null || { echo "make setup: the native extension needs Rust's cargo; install it with rustup (https://rustup.rs) and run make again"; exit 1; }
	$(VENV)/bin/pip install -q ./native
	touch $(NATIVE_STAMP)

setup: $(STAMP) $(NATIVE_STAMP)

demo: setup
	$(VENV)/bin/headwater demo

# The guardrails run first: lint, format and strict types over the whole tree.
check: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: check
	$(VENV)/bin/pytest

unit: setup
	$(VENV)/bin/pytest -m "not integration"

up: setup
	$(VENV)/bin/headwater up

down: setup
	$(VENV)/bin/headwater down

clean:
	rm -rf $(VENV) .headwater .pytest_cache .hypothesis
