# The two commands a new user needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint format bench services-up services-down clean browser

$(STAMP): requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed, found " + sys.version.split()[0]'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

run: install  ## web, worker and beat with demo data (embedded PostgreSQL and Redis unless DATABASE_URL / REDIS_URL)
	$(BIN)/python -m devstack run

test: install lint browser  ## lint, then the whole suite against real PostgreSQL, Redis and a Celery worker
	$(BIN)/python -m pytest -n 2 --dist loadfile

browser:  ## Debian's Chromium for tests/browser, installed when missing (Playwright's own download is not used)
	@test -x /usr/bin/chromium || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

lint: install  ## ruff (lint and format check), then the layer contracts in pyproject.toml
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install
	$(BIN)/python -m bench

services-up: install
	$(BIN)/python -m devstack up

services-down: install
	$(BIN)/python -m devstack down

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
