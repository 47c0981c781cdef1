# One entry point for tooling. `make help` lists the targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUNTIME := $(VENV)/.runtime

MUTANTS := .venv-mutants
MUTATION := .mutation

.PHONY: help install run dist test lint check bench mutants clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP) $(RUNTIME)

# The runtime alone (no test, lint or cloud tooling): what `make run` needs.
$(RUNTIME): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $(RUNTIME)

install: $(STAMP) ## create the virtual environment and install the project with the dev set

run: $(RUNTIME) ## start the local server on http://127.0.0.1:8000 (installs the runtime only)
	$(BIN)/jobtail serve

dist: $(STAMP) ## build a wheel and an sdist into dist/
	rm -rf dist
	$(BIN)/python -m build --outdir dist .

AXE := tests/browser/node_modules/axe-core/axe.min.js
$(AXE): tests/browser/package-lock.json  # axe-core for the browser tests' accessibility checks
	cd tests/browser && npm ci --no-audit --no-fund
	touch $(AXE)

test: $(STAMP) $(AXE) ## run the whole test suite
	$(BIN)/pytest

lint: $(STAMP) ## ruff and mypy (strict, on the package and bench/)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

check: $(STAMP) ## template lint and sam build
	$(BIN)/cfn-lint template.yaml
	$(BIN)/sam build

bench: $(STAMP) ## benchmarks: prints a table of the DESIGN.md figures
	$(BIN)/python -m bench

$(MUTANTS)/.installed: pyproject.toml
	test -d $(MUTANTS) || $(PYTHON) -m venv $(MUTANTS)
	$(MUTANTS)/bin/pip install -q --upgrade pip
	$(MUTANTS)/bin/pip install -q -e '.[mutants]'
	touch $@

# mutmut names modules from their path and only strips `src/`: the tracked tree is staged in
# $(MUTATION) with the package under src/. One worker, niced, so the machine stays usable.
# One module at a time: MODULE=logger.py TESTS='tests/test_logger.py ...' mutates that module
# only, with those tests only, staged in .mutation-logger (see the README's mutation section).
# MARKS= replaces the tests' -m expression ('not postgres and not browser'): MARKS='not browser'
# runs the PostgreSQL tests too (a PostgreSQL module's).
ifdef MODULE
MUTATION := .mutation-$(basename $(notdir $(MODULE)))
endif
mutants: $(MUTANTS)/.installed ## mutation testing of the core (slow, not in CI); MODULE=logger.py TESTS='tests/test_logger.py'; MARKS='not browser' (pytest -m) adds the PostgreSQL tests
	rm -rf $(MUTATION) && mkdir -p $(MUTATION)
	git ls-files -z | xargs -0 cp -P --parents -t $(MUTATION)  # -P: symlinks as links
	mv $(MUTATION)/shared $(MUTATION)/src
	# mutmut copies src/ without its symlinks: store/migrations would be missing for PostgreSQL tests
	find $(MUTATION)/src -type l | while read -r link; do \
		target=$$(readlink -f "$$link"); rm "$$link"; cp -r "$$target" "$$link"; done
	sed -i -e 's|^pythonpath = \["shared", "."\]|pythonpath = ["src", "."]|' \
		-e 's|"shared/jobtail|"src/jobtail|' $(MUTATION)/pyproject.toml
	$(MUTANTS)/bin/python tools/mutants_config.py $(MUTATION)/pyproject.toml "$(MODULE)" "$(TESTS)" "$(MARKS)"
	cd $(MUTATION) && nice -n 19 ../$(MUTANTS)/bin/mutmut run --max-children 1 $(ONLY) || true
	$(MUTANTS)/bin/python tools/mutants_report.py $(MUTATION)

clean: ## remove the environment and local data
	rm -rf $(VENV) $(MUTANTS) $(MUTATION) mutants .jobtail .aws-sam .pytest_cache dist build
