# Two commands on a fresh machine: `make run` (the server on embedded defaults) and `make test` (the whole suite).
# Each creates .venv itself; nothing else needs installing by hand.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test bench check services clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,bench]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/tidings serve

services:
	bash scripts/services.sh

test: $(STAMP) services
	bash scripts/peers.sh
	bash scripts/browser.sh
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP) services
	$(BIN)/python -m bench $(BENCH_ARGS)

check: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .tidings .pytest_cache .mypy_cache .ruff_cache
