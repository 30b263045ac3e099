# Everyday commands. The README's two commands are `make demo` and `make test`; each first runs
# `deploy/local/setup` (apt packages, Kafka jars, the .venv), which is a no-op once done.
# VENV may point at another virtual environment: make test VENV=/path/to/venv

VENV ?= .venv
PYTHON := $(VENV)/bin/python
SERVICES := deploy/local/services
DATASET ?= data/v11
# `make cascade HELD_OUT_MODEL=DIR`: the discriminator trained without three training layouts (its command
# is in docs/CASCADE.md), so the card records the simulation the quadrant route is chosen on.
HELD_OUT_MODEL ?=
HELD_OUT_LAYOUTS ?= photo_side grid_table centered
ONLY ?=
CYCLES ?= 50
# `make draws DRAW_START=N`: fresh files of every evaluation folder from index N on (none of them files of the
# build, nor of a draw from another start), scored with the default model. A change is tested on a start
# nothing has been chosen on; docs/CASCADE.md lists the starts already looked at (1000-ish, 20000, 40000,
# 60000, 80000, 100000, 120000, 140000, 160000 and 180000).
DRAW_START ?= 200000
DRAW_OUT ?= data/eval-draw-$(DRAW_START)
export ALOCC_VENV := $(VENV)

.DEFAULT_GOAL := help
.PHONY: help setup test test-unit lint services-up services-down services-status services-stress demo bench dataset model cascade draws

help: ## list the targets
	@grep -E '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

setup: ## install everything (apt packages, Kafka jars, .venv with the project); quick when done
	deploy/local/setup

test: setup ## all tests; integration tests use ALOCC_KAFKA__BOOTSTRAP_SERVERS / ALOCC_REDIS__URL or start the local services
	$(PYTHON) -m pytest tests

test-unit: setup ## only the tests that need no Kafka or Redis
	$(PYTHON) -m pytest tests -m "not integration"

lint: setup ## ruff and mypy, as CI runs them
	$(PYTHON) -m ruff check .
	$(PYTHON) -m mypy

demo: setup ## the main job end to end: local Kafka + Redis, sample images over HTTP, events, the worker, a summary
	eval "$$($(SERVICES) up)" && $(VENV)/bin/alocc demo

bench: setup ## throughput, latency and memory of the worker against the local services (JSON)
	eval "$$($(SERVICES) up)" && $(VENV)/bin/alocc bench --json

dataset: setup ## build the training/calibration/evaluation dataset into $(DATASET)
	$(VENV)/bin/alocc data build --out $(DATASET) --seed 0 --overwrite

model: dataset ## train, calibrate and install the default model from model/recipes/default.json (about 25 min on 2 CPU cores with bf16 support, more on a busy host)
	nice $(PYTHON) -m model.make_default --data $(DATASET) --install

cascade: setup ## fit the text cascade over the default model on $(DATASET), measure its quadrant route and its sheet route (with its reading), attach it with the model's card band, the panel reading, the sheet route and its reading, the layout band, the rules' floor, the sheet's second reading and the page's second reading to the model's card, and record its evaluation (about 25 min: Tesseract reads about 7,000 images)
	nice $(VENV)/bin/alocc cascade fit --data $(DATASET) --out reports/cascade --engine tesserocr
	$(VENV)/bin/alocc cascade attach --fit reports/cascade/cascade-tesserocr.json
	nice $(VENV)/bin/alocc cascade quadrants --data $(DATASET) --out reports/cascade \
		$(if $(HELD_OUT_MODEL),--held-out-model $(HELD_OUT_MODEL) --held-out-layouts $(HELD_OUT_LAYOUTS))
	$(VENV)/bin/alocc cascade attach --fit reports/cascade/cascade-tesserocr.json \
		--quadrants reports/cascade/cascade-quadrants.json --route-alpha 0.001 \
		--card-alpha 0.0005 --panel-read --data $(DATASET)
	nice $(VENV)/bin/alocc cascade sheets --data $(DATASET) --out reports/cascade
	$(VENV)/bin/alocc cascade attach --sheet-alpha 0.0005 --data $(DATASET)
	$(VENV)/bin/alocc cascade attach --sheet-read-share 0.0025 --data $(DATASET)
	$(VENV)/bin/alocc cascade attach --layout-alpha 0.0005 --data $(DATASET)
	$(VENV)/bin/alocc cascade attach --min-confident 1
	$(VENV)/bin/alocc cascade attach --sheet-second-alpha 0.0005 --data $(DATASET)
	nice $(VENV)/bin/alocc cascade attach --second-read 1 --second-min-boxes 1 --second-max-ground 0.72 --second-min-confident 4 \
		--second-negatives $(DATASET)/train/negatives --data $(DATASET)
	nice $(VENV)/bin/alocc cascade evaluate --data $(DATASET) --out reports/cascade --record

draws: setup ## draw fresh evaluation files from DRAW_START on (2,000-4,000 per folder) and report the default model's misses and flags per family with exact intervals (about 10 min)
	@for spec in "eval/other 4000" "check/target 2000" "check/one-line 1000" "eval/target 2000" "check/photographed 700"; do \
		set -- $$spec; test -f $(DRAW_OUT)/draw-$$(echo $$1 | tr / -).json || \
		$(VENV)/bin/alocc data draw --folder $$1 --count $$2 --start $(DRAW_START) --out $(DRAW_OUT) || exit 1; \
	done
	nice $(VENV)/bin/alocc cascade draws $(DRAW_OUT) --out reports/draws/$(notdir $(DRAW_OUT)).json \
		--records reports/draws/$(notdir $(DRAW_OUT))-records.jsonl

services-up: ## start the local Kafka and Redis (ONLY=kafka or ONLY=redis: one of them) and print their export lines
	$(SERVICES) up $(ONLY)

services-down: ## stop the local Kafka and Redis (or ONLY=...)
	$(SERVICES) down $(ONLY)

services-stress: setup ## start and stop each local service 50 times, the ways the project does; fails on any false failure or leftover
	deploy/local/stress-services --cycles $(CYCLES)

services-status: ## say what runs where
	$(SERVICES) status
