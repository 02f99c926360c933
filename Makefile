# llmbench: `make run` serves the site with demo data, `make test` runs every test.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: run test lint format bench install migrate demo clean

$(VENV)/.installed: requirements/base.txt requirements/dev.txt requirements/parity.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/dev.txt
	$(PY) -m pip install --quiet --no-deps -r requirements/parity.txt
	touch $@

install: $(VENV)/.installed

migrate: install
	$(PY) manage.py migrate --noinput

demo: migrate
	$(PY) manage.py load_demo

## Serve the site (HTTP + websockets) and a task worker, with demo data, until Ctrl-C.
run: demo
	$(PY) manage.py serve --host $(HOST) --port $(PORT)

## The whole test suite: SQLite by default, PostgreSQL with DATABASE_URL, Redis with REDIS_URL.
test: install
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

## Performance targets of the issues, printed as measured / target ratios.
bench: install
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache staticfiles
