# mindstream: `make demo` runs the main job, `make test` runs every test.
# Both create the virtual environment (.venv) on first use; nothing else needs installing.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DATA   ?=

# Inputs of the targets below, each settable on the command line (`make eval EVAL_FLAGS="--jobs 3"`).
# EVAL_DATA: the datasets `make eval` compares on; EVAL_FLAGS: more `mindstream eval` flags (--methods,
# --seeds, --jobs, --set FIELD=VALUE). TRAIN_DATA: the dataset `make train` trains on; TRAIN_FLAGS: more
# `mindstream train` flags (--epochs, --version, ...). BENCH_FLAGS, HOTSWAP_FLAGS, SOAK_FLAGS, GROWTH_FLAGS,
# RETRAIN_BESIDE_FLAGS, PROFILE_FLAGS: flags of `python -m bench.stream`, `bench.hotswap`, `bench.soak`,
# `bench.broker_growth`, `bench.retrain_beside` and `bench.profile_worker` (e.g. BENCH_FLAGS="--repeats 1";
# GROWTH_FLAGS="--steps 0,150000 --hold-s 10").
EVAL_DATA     ?= ../shared/data/amazon-beauty/Beauty.txt ../shared/data/ml-100k
EVAL_FLAGS    ?=
TRAIN_DATA    ?= ../shared/data/ml-100k
TRAIN_FLAGS   ?=
BENCH_FLAGS   ?=
HOTSWAP_FLAGS ?=
SOAK_FLAGS    ?=
GROWTH_FLAGS  ?=
RETRAIN_BESIDE_FLAGS ?=
PROFILE_FLAGS ?=

.PHONY: help venv demo test lint eval train bench clean soak profile broker-growth

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

eval: $(STAMP)  ## offline comparison of all methods on EVAL_DATA -> docs/results/offline_eval.{md,json,png}
	nice -n 10 $(BIN)/mindstream eval $(foreach d,$(EVAL_DATA),--data $(d)) --set sampler=full --quiet $(EVAL_FLAGS)

train: $(STAMP)  ## train MIND on TRAIN_DATA, write a release under models/ and point models/CURRENT at it
	$(BIN)/mindstream train --data $(TRAIN_DATA) --out models $(TRAIN_FLAGS)

bench: $(STAMP)  ## user-tower, streaming, hot-swap, new-item, ANN and retrain-beside-the-worker benchmarks -> docs/benchmarks/{user_tower,stream,hotswap,new_items,ann,retrain_beside}.{md,json}
	$(BIN)/python -m bench.user_tower
	$(BIN)/python -m bench.stream $(BENCH_FLAGS)
	$(BIN)/python -m bench.hotswap $(HOTSWAP_FLAGS)
	$(BIN)/python -m bench.new_items_index
	$(BIN)/python -m bench.ann
	$(BIN)/python -m bench.retrain_beside $(RETRAIN_BESIDE_FLAGS)

clean:  ## remove the virtual environment and build outputs
	rm -rf $(VENV) build *.egg-info

profile: $(STAMP)  ## the worker under a CPU-time profile through a burst of clicks -> docs/benchmarks/profile-beauty.md
	$(BIN)/python -m bench.profile_worker $(PROFILE_FLAGS)

soak: $(STAMP)  ## soak test: 10 min at 50 clicks/s on one worker -> docs/soak.png, figures in docs/reliability.md (SOAK_FLAGS="--duration-s 120")
	$(BIN)/python -m bench.soak $(SOAK_FLAGS)

broker-growth: $(STAMP)  ## where the embedded broker breaks as it fills (~10-15 min) -> docs/benchmarks/broker_growth.{json,png}, docs/reliability.md
	nice -n 5 $(BIN)/python -m bench.broker_growth $(GROWTH_FLAGS)
