# One entry point for tooling. `make help` lists the targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help install run test lint check bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create the virtual environment and install the project

run: $(STAMP) ## start the local server on http://127.0.0.1:8000 (SQLite, in-process worker)
	$(BIN)/jobtail serve

test: $(STAMP) ## run the whole test suite
	$(BIN)/pytest

lint: $(STAMP) ## ruff and mypy (strict, on the package)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

check: $(STAMP) ## template lint and sam build
	$(BIN)/cfn-lint template.yaml
	$(BIN)/sam build

bench: $(STAMP) ## benchmarks: prints a table of the DESIGN.md figures
	$(BIN)/python -m bench

clean: ## remove the environment and local data
	rm -rf $(VENV) .jobtail .aws-sam .pytest_cache
