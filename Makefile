# flowork — `make help` lists the targets. Every target creates/refreshes the venv first when needed.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 5000
# the registered model to serve; empty: the project's tracking.model_name (conf/config.yaml, conf/local/)
MODEL_NAME ?=
TRACKING_URI ?= $(or $(MLFLOW_TRACKING_URI),sqlite:///$(CURDIR)/mlflow.db)
# mlflow's model server execs uvicorn from PATH
export PATH := $(abspath $(BIN)):$(PATH)

# One install command, used by the README, CI and the Dockerfile: torch's CPU build first (an unpinned torch pulls
# a multi-GB CUDA build), then the project with every model family, under the pins in constraints.txt.
# The Dockerfile runs this same target with EXTRAS=all and PyTorch's CPU index.
EXTRAS ?= all,dev
TORCH_INDEX ?=
INSTALL := pip install $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX) )torch==2.13.0 && pip install -c constraints.txt -e '.[$(EXTRAS)]'
IMAGE ?= flowork

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/activate pyproject.toml constraints.txt
	source $(BIN)/activate && $(INSTALL)
	touch $@

.PHONY: help install run test test-slow test-full lint bench select serve-best ui clean docker-build docker-run docker-serve-best docker-lint
help:  ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

install: $(VENV)/.installed  ## create the venv and install flowork with every model family

run: install  ## the example sweep: one Optuna study per model family, 2 workers, champion registered (ARGS=overrides)
	$(BIN)/python -m flowork model=ridge,random_forest,xgb,prophet,darts_nbeats,ensemble hydra/launcher=joblib $(ARGS) -m

bench: install  ## every benchmark, side by side with its baseline (~15 min): bench/results.json, bench/RESULTS.md
	cd bench && ../$(BIN)/python run_all.py

select: install  ## refit the latest sweep's best trial and register it as champion (SWEEP=name for another)
	$(BIN)/flowork select $(if $(SWEEP),--sweep $(SWEEP))

serve-best: install  ## serve the champion on 127.0.0.1:$(PORT) (POST /invocations)
	MLFLOW_TRACKING_URI=$(TRACKING_URI) $(BIN)/flowork serve $(if $(MODEL_NAME),--model-name $(MODEL_NAME) )--port $(PORT)

test: install  ## fast tests (no slow end-to-end runs), lint
	$(BIN)/ruff check flowork hydra_plugins user_code tests
	$(BIN)/python -m pytest -q

test-slow: install  ## only the slow end-to-end CLI runs (CI runs them after `make test`)
	$(BIN)/python -m pytest -q -m slow

test-full: install  ## every test, including the slow end-to-end CLI runs
	$(BIN)/python -m pytest -q -m ''

lint: install  ## ruff + mypy
	$(BIN)/ruff check flowork hydra_plugins user_code tests
	$(BIN)/ruff format --check flowork hydra_plugins user_code tests
	$(BIN)/mypy flowork

docker-build:  ## build the flowork image (needs a Docker engine)
	docker build -t $(IMAGE) .

docker-run:  ## python -m flowork $(ARGS) in the image, with conf/, user_code/, data/ and outputs mounted
	mkdir -p multirun mlartifacts
	docker run --rm -v $(CURDIR)/conf:/app/conf -v $(CURDIR)/user_code:/app/user_code -v $(CURDIR)/data:/app/data \
		-v $(CURDIR)/multirun:/app/multirun -v $(CURDIR)/mlartifacts:/app/mlartifacts -v flowork-store:/app/store \
		$(if $(MLFLOW_TRACKING_URI),-e MLFLOW_TRACKING_URI) $(IMAGE) $(ARGS)

docker-serve-best: install  ## build the champion's serving image with MLflow ($(IMAGE)-champion, port 8080)
	MLFLOW_TRACKING_URI=$(TRACKING_URI) $(BIN)/mlflow models build-docker \
		-m "models:/$(or $(MODEL_NAME),temperature-forecaster)@champion" \
		-n $(IMAGE)-champion

docker-lint: install  ## lint the Dockerfile offline (hadolint)
	$(BIN)/hadolint Dockerfile

ui: install  ## MLflow UI on the embedded store
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host 127.0.0.1 --port $(PORT)

clean:  ## remove run outputs (keeps the MLflow store: delete mlflow.db and mlartifacts/ yourself)
	rm -rf outputs multirun .pytest_cache
