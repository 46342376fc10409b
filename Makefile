# The two commands of the README: `make demo` and `make test`. Both set themselves up
# (virtualenv, packages); Kafka jars and the services are started by the code they run.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-stamp

.PHONY: setup demo test check unit up down clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

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
