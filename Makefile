# Everyday commands. `make test` is the one test command (CI runs exactly this).
# PYTHON may point at a virtual environment's interpreter: make test PYTHON=.venv/bin/python

PYTHON ?= python3
SERVICES := deploy/local/services

.DEFAULT_GOAL := help
.PHONY: help test test-unit lint services-up services-down services-status

help: ## list the targets
	@grep -E '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

test: ## all tests; integration tests use ALOCC_KAFKA__BOOTSTRAP_SERVERS / ALOCC_REDIS__URL or start the local services
	$(PYTHON) -m pytest tests

test-unit: ## only the tests that need no Kafka or Redis
	$(PYTHON) -m pytest tests -m "not integration"

lint: ## ruff and mypy, as CI runs them
	$(PYTHON) -m ruff check .
	$(PYTHON) -m mypy

services-up: ## start the local Kafka and Redis and print their export lines
	$(SERVICES) up

services-down: ## stop the local Kafka and Redis
	$(SERVICES) down

services-status: ## say what runs where
	$(SERVICES) status
