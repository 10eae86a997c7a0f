# make all   : install into .venv, run every notebook, regenerate images/, results/ and the README tables
# make test  : install into .venv, run the tests (about 7 minutes on 2 CPU cores)
# make lint  : ruff on the Python files and the notebooks
# make seeds : Basic_VAE with seeds 1 and 2 into results/basic_vae_seed<N>.* (the seed-to-seed spread)
# make recipes : the Basic VAE's recipe frontier into results/basic_vae_recipes.json (about 30 minutes)
# PYTHON=python3.12 VENV=.venv312 make test   runs the same tests on Python 3.12
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: all test lint readme seeds recipes

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

all: $(VENV)/.installed
	$(BIN)/python run_all.py

test: $(VENV)/.installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

readme: $(VENV)/.installed
	$(BIN)/python run_all.py --readme-only

seeds: $(VENV)/.installed
	$(BIN)/python run_all.py --only Basic_VAE.ipynb --seeds 1 2

recipes: $(VENV)/.installed
	$(BIN)/python benchmarks/basic_vae_recipes.py
