# `make demo` runs the main job against a local Marketo sandbox; `make test` runs lint, types and tests;
# `make bench` measures the tap and the target at scale (minutes; not part of `make test`).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint types pytest demo bench sandbox clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# marketorestpython (a Marketo client nobody here wrote; tests drive the sandbox with it) depends on
	# the old `backoff` distribution, which would overwrite python-backoff's `backoff` module that
	# singer-sdk needs; its own code runs on python-backoff, so it is installed without its deps.
	$(BIN)/python -m pip install --quiet --no-deps 'marketorestpython==0.5.25' 'pytz>=2024.1'
	touch $(STAMP)

test: lint types pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -q

demo: $(STAMP)
	$(BIN)/python -m demo.run

bench: $(STAMP)
	$(BIN)/python -m bench.run

sandbox: $(STAMP)
	$(BIN)/marketo-sandbox --port 8765 --client-id demo-client --client-secret demo-secret

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
