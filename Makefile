# The README's commands. `make run` and `make test` work on a fresh clone: they install what they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
AZURITE := node_modules/.bin/azurite
# Azure's Python worker (azure-functions-runtime) on Python 3.13, for the worker-index test.
WORKER_VENV := .venv-worker
WORKER_STAMP := $(WORKER_VENV)/.installed
PIP_INSTALL := -m pip install --quiet --disable-pip-version-check --require-hashes

.PHONY: install worker lock run test unit lint typecheck check simulate bench soak clean

## Everything from the hashed lock files: requirements-dev.lock (pip) and package-lock.json (npm ci).
install: $(STAMP) $(AZURITE)

$(STAMP): requirements-dev.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) $(PIP_INSTALL) -r requirements-dev.lock
	touch $(STAMP)

$(AZURITE): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $(AZURITE)

## The app's runtime lock installed on Python 3.13 (found under pyenv or on PATH) with the worker it pins.
worker: $(WORKER_STAMP)

$(WORKER_STAMP): requirements.lock tests/support/worker_python.py
	rm -rf $(WORKER_VENV)
	worker_python="$$($(PYTHON) tests/support/worker_python.py 3.13)" && "$$worker_python" -m venv $(WORKER_VENV)
	$(WORKER_VENV)/bin/python $(PIP_INSTALL) -r requirements.lock
	touch $(WORKER_STAMP)

## Renew both lock files after changing requirements*.txt (`UPGRADE=1` moves every pin to the newest).
lock: install
	$(PY) -m uv pip compile requirements-dev.txt --universal --python-version 3.11 --generate-hashes --quiet \
		--custom-compile-command "make lock" $(if $(UPGRADE),--upgrade) -o requirements-dev.lock
	$(PY) -m uv pip compile requirements.txt --universal --python-version 3.11 --generate-hashes --quiet \
		--custom-compile-command "make lock" -c requirements-dev.lock -o requirements.lock

## The whole agent locally: Azurite, SMTP sink, sandbox Graph API and the devhost on 127.0.0.1.
run: install
	$(PY) -m devhost.run

## Send test leads to a running `make run` (N=5 leads at R=2 per second).
simulate: install
	$(PY) -m fakes.simulate --leads $(or $(N),5) --rate $(or $(R),2)

## The whole suite: lint, types, unit, integration (real Azurite, SQLite, SMTP, sandbox Graph) and end-to-end.
test: install worker lint typecheck
	$(PY) -m pytest $(PYTEST_ARGS)

unit: install
	$(PY) -m pytest tests/unit -q

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: install
	$(PY) -m mypy shared functions function_app.py wiring.py devhost fakes bench

## Benchmarks: each prints its figures and a reference measured in the same run.
bench: install
	$(PY) -m bench.speed_to_lead
	$(PY) -m bench.webhook_latency
	$(PY) -m bench.end_to_end
	$(PY) -m bench.notify_latency
	$(PY) -m bench.cold_start
	$(PY) -m bench.store_scale
	$(PY) -m bench.reconcile
	$(PY) -m bench.ops_per_lead
	$(PY) -m bench.client_cpu

## 10,000 leads through the devhost while faults are injected; fails if any lead is lost or emailed twice.
soak: install
	$(PY) -m bench.soak --leads $(or $(N),10000)

clean:
	rm -rf .devdata .pytest_cache .mypy_cache .ruff_cache
