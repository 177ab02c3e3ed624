# mindstream: `make demo` runs the main job, `make test` runs every test.
# Both create the virtual environment (.venv) on first use; nothing else needs installing.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DATA   ?=

.PHONY: venv demo test lint eval bench clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)  ## create .venv and install the project

demo: $(STAMP)  ## embedded broker, a trained model, the workers, events flowing, candidates printed
	$(BIN)/mindstream demo $(if $(DATA),--data $(DATA))

test: $(STAMP)  ## lint and run the whole test suite
	$(BIN)/ruff check .
	$(BIN)/pytest -q

lint: $(STAMP)  ## ruff only
	$(BIN)/ruff check .

clean:  ## remove the virtual environment and build outputs
	rm -rf $(VENV) build *.egg-info
