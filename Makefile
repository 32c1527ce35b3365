# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv test test-all lint demo bench clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "Python 3.11 is needed: set PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

## The test suite (what CI runs): fast tests plus small versions of the slow end-to-end runs.
test: $(STAMP)
	$(PY) -m pytest -m "not slow and not gpu"

## Everything, the slow end-to-end runs included.
test-all: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

## Synthesize both datasets, pretrain, fine-tune (and from scratch), 10x3 test, print the table.
demo: $(STAMP)
	$(PY) -m a2video.demo --out runs/demo

bench: $(STAMP)
	$(PY) benchmarks/bench_blocks.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
