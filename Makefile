# Two entry points for a fresh machine: `make demo` and `make test` (each sets up .venv first).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint setup

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	@# A CPU build of torch when none is present; the package itself only asks for torch>=2.2.
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

demo: $(STAMP)
	rm -rf runs/demo runs/demo-ranker
	$(BIN)/deepmovie train biased-mf --data ml-latest-small --out runs/demo
	$(BIN)/deepmovie train ials --data ml-latest-small --out runs/demo-ranker
	@echo "serve both: $(BIN)/deepmovie serve --ranker runs/demo-ranker --rater runs/demo"

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

test: $(STAMP) lint
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"
