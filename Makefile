# Every target that needs the project creates .venv and installs into it first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test test-all lint typecheck bench bench-ledger bench-tui screenshots clean

# constraints.txt pins every dependency to the versions the tests (and snapshots) were made with.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { \
	  echo "error: '$(PYTHON) -m venv' failed; install the venv module (Debian: apt-get install python3-venv) and retry" >&2; exit 1; }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/dltui demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest

test-all: lint typecheck
	$(BIN)/pytest -m ''

bench: $(STAMP)
	$(BIN)/python bench/run.py --requests
	$(BIN)/python bench/limits.py

bench-ledger: $(STAMP)
	$(BIN)/python bench/ledger.py

bench-tui: $(STAMP)
	$(BIN)/python bench/tui.py

screenshots: $(STAMP)
	$(BIN)/python -m tests.tui.screenshots

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .ruff_cache
