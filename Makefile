# make all   : install into .venv, run every notebook, regenerate images/, results/ and the README tables
#              one at a time; with 8+ cores, .venv/bin/python run_all.py --jobs 4 runs four side by side
# make test  : install into .venv, run the tests (about 11 minutes on 2 CPU cores)
# make lint  : ruff on the Python files and the notebooks
# make seeds : the Basic VAE and the models on its network (IWAE, IAF, VampPrior, Pyro) with seeds 1
#              and 2, into results/<name>_seed<N>.* (the seed-to-seed spread), and M2 on label draws
#              1 and 2 (SemiSupervised_VAE's error bar); about 100 minutes
# make recipes : the Basic VAE's recipe frontier into results/basic_vae_recipes.json (about 30 minutes)
# make costs : each model's epoch and NLL cost as a ratio to the Basic VAE's, into results/cost_ratios.json
# make bias  : how much k = 1000 overstates each model's NLL, into results/estimator_bias.json (after make all)
# make book  : the notebooks as a web book, as committed (nothing is rerun), into _build/html/
# make jupyter : JupyterLab on the notebooks
# PYTHON=python3.12 VENV=.venv312 make test   runs the same tests on Python 3.12
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: all test lint readme seeds recipes costs bias book jupyter

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
	$(BIN)/python run_all.py --only Basic_VAE.ipynb --only IWAE.ipynb --only IAF_VAE.ipynb \
		--only VampPrior_VAE.ipynb --only Pyro_VAE.ipynb --only SemiSupervised_VAE.ipynb --seeds 1 2

recipes: $(VENV)/.installed
	$(BIN)/python benchmarks/basic_vae_recipes.py

costs: $(VENV)/.installed
	$(BIN)/python benchmarks/cost_ratios.py --write

bias: $(VENV)/.installed
	$(BIN)/python benchmarks/estimator_bias.py --write

# Sphinx reads the repository root with book/'s settings; -W: a broken link or figure fails the build.
book: $(VENV)/.installed
	$(BIN)/jupyter-book build . --config book/_config.yml --toc book/_toc.yml -W --keep-going

# As root (a container), Jupyter refuses to start without --allow-root. MALLOC_ARENA_MAX: see run_all.py.
jupyter: $(VENV)/.installed
	MALLOC_ARENA_MAX=2 $(BIN)/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root)
