# ridestream — every command a user or CI needs. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH)

DEMO_RIDES ?= 5000
DEMO_RATE ?= 1000
DEMO_GATEWAY_REQUESTS ?= 1000

.PHONY: help setup system-deps demo test bench lint format clean kafka-start kafka-stop

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-12s %s\n", $$1, $$2}'

system-deps: ## Install Java 17 and Maven from Debian when missing (needs root)
	@bash scripts/system-deps.sh

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip==26.3
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: system-deps $(STAMP) ## Install everything: system packages, Python packages, Kafka's jars
	$(BIN)/ridestream kafka fetch >/dev/null

demo: setup ## Run the system on its embedded defaults: Kafka, topics, a replay, what arrived
	@bash scripts/demo.sh $(DEMO_RIDES) $(DEMO_RATE) $(DEMO_GATEWAY_REQUESTS)

test: setup ## Run the whole test suite against a real Kafka broker, its exactly-once tests on three
	$(BIN)/pytest
	RIDESTREAM_TEST_BROKERS=3 $(BIN)/pytest -m cluster

bench: setup ## Run the benchmarks; results in bench/results/, the page in docs/benchmarks.md
	$(BIN)/python -m bench.predict
	$(BIN)/python -m bench.publish
	$(BIN)/python -m bench.stream
	$(BIN)/python -m bench.decisions
	$(BIN)/python -m bench.gateway
	$(BIN)/python -m bench.cluster
	$(BIN)/python -m bench.report

lint: setup ## ruff (lint + format check), mypy and the import layers
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

format: setup ## Apply ruff's formatting and safe fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

kafka-start: setup ## Start the local broker
	$(BIN)/ridestream kafka start

kafka-stop: ## Stop the local broker
	$(BIN)/ridestream kafka stop

clean: ## Remove the virtualenv and caches (not Kafka's jar cache or data)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
