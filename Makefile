# The README's commands. `make demo` and `make test` set up .venv themselves.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint bench clean

# pip shows its own progress on a terminal; elsewhere (CI, logs) it is quiet and one line per step
# says what is being installed. The numerical stack is installed at the versions the suite was
# checked with (constraints.txt); pyproject.toml keeps the ranges a user's install may take.
$(STAMP): pyproject.toml constraints.txt
	@set -e; \
	if [ -t 1 ]; then quiet=; else quiet=--quiet; fi; \
	echo "setup [1/4]: creating $(VENV) with $(PYTHON)"; \
	$(PYTHON) -m venv $(VENV); \
	echo "setup [2/4]: upgrading pip"; \
	$(BIN)/pip install $$quiet --upgrade pip; \
	echo "setup [3/4]: torch==2.13.0 first, pinned: the CPU wheel, not the registry's CUDA build"; \
	$(BIN)/pip install $$quiet torch==2.13.0; \
	echo "setup [4/4]: the project and its test tools (pip install -e '.[dev]'; 2-4 minutes)"; \
	$(BIN)/pip install $$quiet -e '.[dev]' -c constraints.txt; \
	touch $(STAMP); \
	echo "setup: done ($(VENV))"

setup: $(STAMP)  ## create .venv and install the project with test tools

demo: $(STAMP)  ## the main job end to end: local Kafka broker, replay, consumer, summary
	$(BIN)/dmdt-broker demo --limit 300  # all 5,757 sources: see docs/streaming.md, The demo

test: $(STAMP)  ## the test suite (starts its own Kafka-protocol broker on 127.0.0.1)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check dmdt broker trainer research tests benchmarks scripts
	$(BIN)/ruff format --check dmdt broker trainer research tests benchmarks scripts
	$(BIN)/mypy

bench: $(STAMP)  ## speed benchmarks (ratios against references in the same process)
	$(BIN)/python benchmarks/bench_dmdt.py
	$(BIN)/python benchmarks/bench_decode.py
	$(BIN)/python benchmarks/bench_stream.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
