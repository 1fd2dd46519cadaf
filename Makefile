# The two commands of the README: `make run` and `make test`.
VENV   ?= .venv
PYTHON ?= python3
BIN     = $(VENV)/bin

.PHONY: run test bench migrate clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt $(VENV)/.installed
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

migrate: $(VENV)/.installed
	$(BIN)/flask --app wsgi db upgrade

# Development server: SQLite and the in-process store unless DATABASE_URL /
# REDIS_URL say otherwise; gunicorn settings come from gunicorn.conf.py. With
# WEBHOOK_URLS set, the webhook delivery process runs beside it and stops with it.
run: migrate
	@if [ -n "$$WEBHOOK_URLS" ]; then \
		$(BIN)/flask --app wsgi webhooks run & worker=$$!; \
		trap 'kill $$worker 2>/dev/null; wait $$worker' EXIT INT TERM; \
		$(BIN)/gunicorn wsgi:app; \
	else \
		exec $(BIN)/gunicorn wsgi:app; \
	fi

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Throughput and latency as ratios to the stack's own ceiling (issues 8 and 18),
# with round trips per request: starts its own PostgreSQL cluster and Redis and
# gunicorn; prints a table and writes bench/results.json. Takes about 10 minutes.
bench: $(VENV)/.installed-dev
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) instance .pytest_cache
