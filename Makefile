# make all   : install into .venv, run every notebook, regenerate images/, results/ and the README tables
# make test  : install into .venv, run the tests (about 3 minutes on 2 CPU cores)
# make lint  : ruff on the Python files and the notebooks
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: all test lint readme

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

all: $(VENV)/.installed
	$(BIN)/python run_all.py

test: $(VENV)/.installed
	$(BIN)/python -m pytest

lint: $(VENV)/.installed
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

readme: $(VENV)/.installed
	$(BIN)/python run_all.py --readme-only
