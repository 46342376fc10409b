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

.PHONY: setup browser demo test check unit up down clean

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

# The console's browser tests (tests/integration/test_console.py) drive Debian's chromium
# through its chromedriver; installed here when missing, never downloaded by selenium.
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then SUDO=; \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
	else echo "make browser: /usr/bin/chromium or /usr/bin/chromedriver is missing and this user can neither apt-get (not root) nor sudo without a password; run: sudo apt-get install -y --no-install-recommends chromium chromium-driver"; exit 1; fi; \
	echo "installing Debian's chromium and chromium-driver (the console's browser tests)"; \
	$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver \
	  || { $$SUDO apt-get update -q && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver; } \
	  || { echo "make browser: apt-get could not install chromium chromium-driver (see above); install them and run make again"; exit 1; }

test: check browser
	$(VENV)/bin/pytest

unit: setup
	$(VENV)/bin/pytest -m "not integration"

up: setup
	$(VENV)/bin/headwater up

down: setup
	$(VENV)/bin/headwater down

clean:
	rm -rf $(VENV) .headwater .pytest_cache .hypothesis
