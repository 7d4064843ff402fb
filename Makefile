# The one entry point for people and CI: run, test, lint, fmt, bench.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
BENCH_STAMP := $(VENV)/.bench-stamp
# The PostgreSQL half of the suite runs against this database (one schema per test).
export TASKEXEC_TEST_POSTGRES_URL ?= postgresql://root@127.0.0.1:5432/test

.PHONY: install run test test-sqlite lint fmt bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python >= 3.11 is required (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

# The peers of the side-by-side benchmark (Celery, Procrastinate, matplotlib): bench only.
$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e ".[dev,bench]"
	@touch $(BENCH_STAMP)

## run: the all-in-one dev stack (API on http://127.0.0.1:8000, embedded NATS, SQLite under ./var)
run: $(STAMP)
	$(VENV)/bin/taskexec dev

## test: the whole suite, on SQLite and on PostgreSQL
test: $(STAMP)
	$(PY) -m pytest

## test-sqlite: only the SQLite half (no PostgreSQL needed)
test-sqlite: $(STAMP)
	TASKEXEC_TEST_POSTGRES=skip $(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .
	$(VENV)/bin/lint-imports

fmt: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

## bench: taskexec beside Celery + Redis and Procrastinate on this machine (bench/results/)
bench: $(BENCH_STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis *.egg-info
