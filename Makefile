# The README's commands. `make run` and `make test` work on a fresh clone: they install what they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
AZURITE := node_modules/.bin/azurite

.PHONY: install run test unit lint typecheck check simulate bench soak clean

install: $(STAMP) $(AZURITE)

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

$(AZURITE): package.json
	npm install --no-audit --no-fund --loglevel=error
	touch $(AZURITE)

## The whole agent locally: Azurite, SMTP sink, sandbox Graph API and the devhost on 127.0.0.1.
run: install
	$(PY) -m devhost.run

## Send test leads to a running `make run` (N=5 leads at R=2 per second).
simulate: install
	$(PY) -m devhost.simulate --leads $(or $(N),5) --rate $(or $(R),2)

## The whole suite: lint, types, unit, integration (real Azurite, SQLite, SMTP, sandbox Graph) and end-to-end.
test: install lint typecheck
	$(PY) -m pytest $(PYTEST_ARGS)

unit: install
	$(PY) -m pytest tests/unit -q

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: install
	$(PY) -m mypy shared functions function_app.py devhost bench

## Benchmarks: each prints its figures and a reference measured in the same run.
bench: install
	$(PY) -m bench.webhook_latency
	$(PY) -m bench.end_to_end
	$(PY) -m bench.notify_latency
	$(PY) -m bench.cold_start
	$(PY) -m bench.store_scale
	$(PY) -m bench.reconcile

## 10,000 leads through the devhost while faults are injected; fails if any lead is lost or emailed twice.
soak: install
	$(PY) -m bench.soak --leads $(or $(N),10000)

clean:
	rm -rf .devdata .pytest_cache .mypy_cache .ruff_cache
