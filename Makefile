# Every target sets itself up on a fresh machine: the venv is (re)built when missing or when the
# project's dependency files change.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export KOTONE_HOME ?= $(CURDIR)/.kotone

.PHONY: setup test lint format bench demo dev clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,train]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check kotone_pipeline kotone_pipeline_tests benchmarks
	$(BIN)/ruff format --check kotone_pipeline kotone_pipeline_tests benchmarks

format: $(STAMP)
	$(BIN)/ruff check --fix kotone_pipeline kotone_pipeline_tests benchmarks
	$(BIN)/ruff format kotone_pipeline kotone_pipeline_tests benchmarks

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

demo: $(STAMP)
	$(BIN)/kotone demo --cycles 3

dev: $(STAMP)
	$(BIN)/kotone dev

clean:
	rm -rf $(VENV) .kotone .pytest_cache
