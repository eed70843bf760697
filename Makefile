# Two set-up commands for a fresh machine (see README): `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test bench clean

# Core install: enough for `scrub apply` and the demo (no torch, no ray).
$(VENV)/.installed-core: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# Every extra: nsfw (torch, open_clip), ray, postgres, dev.
$(VENV)/.installed-all: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[all]'
	touch $@ $(VENV)/.installed-core $(VENV)/.installed-dev

# Core plus the dev tools (pytest, psutil) for the benchmarks.
$(VENV)/.installed-dev: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed-core

demo: $(VENV)/.installed-core
	$(BIN)/scrub demo

test: $(VENV)/.installed-all
	$(BIN)/python -m pytest

# scrub against the tools a user would pick instead (DuckDB, polars), same run: bench/all.py.
BENCH_ARGS ?= --rows 4000000
bench: $(VENV)/.installed-dev
	$(BIN)/python bench/all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) scrub-demo bench/.cache .pytest_cache
