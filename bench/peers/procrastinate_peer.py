"""Procrastinate 3.10 on PostgreSQL: the peer for the side-by-side benchmark.

    python -m bench.peers.procrastinate_peer --tasks 3000          # the four measurements
    python -m bench.peers.procrastinate_peer --compare --repeats 5 # re-weigh the settings

Workers: 2 x ``procrastinate --app bench.peers.procrastinate_worker.app --log-level
warning worker --concurrency 8 --fetch-job-polling-interval 0.1``, LISTEN/NOTIFY on (the
default, as the docs recommend), a pool of 4 connections each, the task an ``async def``.
Why:

* A worker fetches jobs one query at a time (``procrastinate_fetch_job_v2``, a committed
  UPDATE per job), so one worker's fetch loop is serial whatever its concurrency; with a
  trivial task, concurrency 8 only overlaps the finish of one job with the fetch of the
  next. Two worker processes, one per core, run two fetch loops. Measured: 2 x 8 kept up
  with the submitting client (throughput = submit rate), 1 x 8 fell behind it.
* concurrency 8 per worker, as the reference; 16 (pool 8) and 4 were no better.
* ``async def`` task: the work is microseconds of Python; a sync task would cost a thread
  hand-off per job (``sync_to_async``) and measured ~15 % more worker CPU per job.
* LISTEN/NOTIFY: each defer's INSERT fires ``pg_notify`` and an idle worker fetches at
  once. ``fetch_job_polling_interval`` (default 5 s) is then only the safety net for a
  missed notification (the worker clears its "new job" event after a fetch, so a notify
  landing during that fetch is lost); 0.1 s caps that at 0.1 s instead of 5 s for one
  cheap query per worker per 0.1 s while idle.
* ``--log-level warning``: the CLI's default is INFO, a line per job start and outcome;
  WARNING matches Celery's default (no line per task).

Each peer makes a database of its own (``bench_procrastinate_<random>``, dropped WITH
(FORCE) afterwards, and checked gone), applies Procrastinate's schema with its schema
manager, and uses ~12 connections (2 x (4 + listener), client 1, monitor 1).

Submitting is ``task.defer(order=…)`` with the app opened synchronously (a psycopg pool
of one connection): each call returns once its transaction committed, so the job is
durable (synchronous_commit is on). The batch form is ``batch_defer`` (3.10 has it: one
statement for all jobs). Procrastinate stores no task results and sends no notification
on completion, so the client polls ``procrastinate_jobs.status`` on a connection of its
own: every 5 ms in the throughput runs (one count over the run's id range), every 1 ms
for the single job in ``idle_latency``. Each measurement starts on an emptied jobs table
(TRUNCATE while the workers are idle), so every run starts from the same state.
Measured for these settings, and tried: docs/benchmarks.md ("The peers' settings")."""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from typing import Any, Self

import psycopg
from procrastinate.types import JSONDict
from psycopg import sql
from psycopg.conninfo import make_conninfo

from bench.peers.cli import cli
from bench.peers.common import Workers, open_loop, sigint_ignored, sigterm_as_exit
from bench.peers.orders import EXAMPLE_INPUT, TASK_NAME
from bench.peers.procrastinate_app import make_app

DEFAULT_URL = "postgresql://root@127.0.0.1:5432/test"
DONE_TIMEOUT = 300.0  # seconds: generous, a run on a busy machine can crawl
THROUGHPUT_POLL = 0.005
IDLE_POLL = 0.001
COUNT_QUERY = """
    SELECT count(*) FILTER (WHERE status = 'succeeded'),
           count(*) FILTER (WHERE status NOT IN ('todo', 'doing', 'succeeded'))
    FROM procrastinate_jobs WHERE id BETWEEN %s AND %s
"""
STATUS_QUERY = "SELECT status FROM procrastinate_jobs WHERE id = %s"


class ProcrastinatePeer:
    """Procrastinate worker(s) as subprocesses on a private database; see the module doc."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        workers: int = 2,
        concurrency: int = 8,
        pool_size: int = 4,
        polling_interval: float = 0.1,
        sync_task: bool = False,
    ) -> None:
        self.base_url = base_url
        self.workers = workers
        self.concurrency = concurrency
        self.pool_size = pool_size
        self.polling_interval = polling_interval
        self.sync_task = sync_task
        self.database = f"bench_procrastinate_{uuid.uuid4().hex[:12]}"
        self.dsn = make_conninfo(base_url, dbname=self.database)
        self.name = (
            f"procrastinate ({workers} worker(s) x concurrency {concurrency}, "
            f"pool {pool_size}{', sync task' if sync_task else ''})"
        )
        self._app = make_app(self.dsn, pool_size=1, sync_task=sync_task)
        self._task = self._app.tasks[TASK_NAME]
        self._stack = ExitStack()
        self._monitor: psycopg.Connection[Any] | None = None
        self._workers: Workers | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> Self:
        with ExitStack() as stack:
            stack.enter_context(sigterm_as_exit())
            self._create_database()
            stack.callback(self._drop_database)
            self._app.open()
            stack.callback(self._app.close)
            self._app.schema_manager.apply_schema()
            self._monitor = stack.enter_context(psycopg.connect(self.dsn, autocommit=True))
            self._workers = stack.enter_context(Workers(self._worker_commands(), self._env()))
            self._warm_up()
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._workers = None
        self._monitor = None
        with sigint_ignored():
            self._stack.close()

    def processes(self) -> dict[str, list[int]]:
        """For ``bench.resources.Meter``: the workers (PostgreSQL is measured for all)."""
        assert self._workers is not None
        return {"worker": self._workers.pids}

    def _admin(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.base_url, autocommit=True)

    def _create_database(self) -> None:
        with self._admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))

    def _drop_database(self) -> None:
        with self._admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(self.database)
                )
            )
            left = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)
            ).fetchone()
        if left:
            raise RuntimeError(f"database {self.database} is still there after teardown")

    def _worker_commands(self) -> list[list[str]]:
        return [
            [
                sys.executable, "-m", "procrastinate",
                "--app", "bench.peers.procrastinate_worker.app", "--log-level", "warning",
                "worker", "--name", f"bench-{i}", "--concurrency", str(self.concurrency),
                "--fetch-job-polling-interval", str(self.polling_interval),
            ]
            for i in range(self.workers)
        ]  # fmt: skip

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "BENCH_PROCRASTINATE_DSN": self.dsn,
            "BENCH_PROCRASTINATE_POOL": str(self.pool_size),
            "BENCH_PROCRASTINATE_SYNC_TASK": "1" if self.sync_task else "0",
        }

    def _warm_up(self, timeout: float = 60.0) -> None:
        """Wait for the workers to run a first job, then a few more through every slot."""
        self._wait_done([self._submit()], timeout=timeout, interval=0.01)
        self._wait_done([self._submit() for _ in range(20 * self.workers * self.concurrency)])
        self._reset()

    def _reset(self) -> None:
        """Empty the jobs table so that every run starts from the same state (and collect
        the client's garbage now, as the Celery peer must, rather than mid-measurement)."""
        assert self._monitor is not None
        gc.collect()
        self._monitor.execute("TRUNCATE procrastinate_jobs CASCADE")

    # -- the four measurements ---------------------------------------------------------------

    def _submit(self) -> int:
        return int(self._task.defer(order=EXAMPLE_INPUT))  # int(): typed even without the extra

    def _wait_done(
        self, ids: list[int], timeout: float = DONE_TIMEOUT, interval: float = THROUGHPUT_POLL
    ) -> None:
        """Poll until every job in ``ids`` (a contiguous run) has succeeded; fail fast on a
        failed/cancelled/aborted one, or on a worker that died."""
        assert self._monitor is not None and self._workers is not None
        low, high, n = min(ids), max(ids), len(ids)
        deadline = time.monotonic() + timeout
        while True:
            row = self._monitor.execute(COUNT_QUERY, (low, high), prepare=True).fetchone()
            succeeded, bad = row if row else (0, 0)
            if bad:
                raise AssertionError(f"{bad} of {n} jobs did not succeed")
            if succeeded == n:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {succeeded} of {n} jobs done after {timeout:.0f} s")
            self._workers.check_alive()
            time.sleep(interval)

    def _measure(self, submit_all: Callable[[int], list[int]], n: int) -> float:
        self._reset()
        begin = time.perf_counter()
        ids = submit_all(n)
        self._wait_done(ids)
        elapsed = time.perf_counter() - begin
        if len(ids) != n or max(ids) - min(ids) != n - 1:
            raise AssertionError(f"expected {n} contiguous job ids, got {len(ids)}")
        return n / elapsed

    def throughput(self, n: int) -> float:
        return self._measure(lambda k: [self._submit() for _ in range(k)], n)

    def throughput_bulk(self, n: int) -> float | None:
        job: JSONDict = {"order": EXAMPLE_INPUT}
        return self._measure(lambda k: self._task.batch_defer(*[job] * k), n)

    def submit_latency(self, rate: float, seconds: float) -> list[float]:
        self._reset()
        latencies, ids = open_loop(rate, seconds, self._submit)
        self._wait_done(ids)  # drain, so the next measurement starts idle
        return latencies

    def idle_latency(self, samples: int) -> list[float]:
        assert self._monitor is not None
        self._reset()
        latencies = []
        for _ in range(samples):
            begin = time.perf_counter()
            job_id = self._submit()
            deadline = time.monotonic() + DONE_TIMEOUT
            while True:
                row = self._monitor.execute(STATUS_QUERY, (job_id,), prepare=True).fetchone()
                status = row[0] if row else None
                if status == "succeeded":
                    break
                if status not in ("todo", "doing") or time.monotonic() > deadline:
                    raise AssertionError(f"job {job_id} ended as {status}")
                time.sleep(IDLE_POLL)
            latencies.append(time.perf_counter() - begin)
        return latencies


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url",
        default=DEFAULT_URL,
        help="where to CREATE (and afterwards DROP) a private database",
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=8, help="jobs at once per worker")
    parser.add_argument("--pool-size", type=int, default=4, help="connections per worker")
    parser.add_argument(
        "--polling-interval",
        type=float,
        default=0.1,
        help="fetch_job_polling_interval (LISTEN/NOTIFY stays on)",
    )
    parser.add_argument("--sync-task", action="store_true", help="register a sync def task")


#: ``--compare``: the worker shapes worth weighing for this workload on 2 cores.
VARIANTS: dict[str, dict[str, Any]] = {
    "1 worker x concurrency 8, pool 4": {"workers": 1},
    "1 worker x concurrency 16, pool 8": {"workers": 1, "concurrency": 16, "pool_size": 8},
    "2 workers x concurrency 8, pool 4 (chosen)": {"workers": 2},
    "2 workers x concurrency 8, pool 4, sync task": {"workers": 2, "sync_task": True},
}


def _make(args: argparse.Namespace, overrides: Mapping[str, Any]) -> ProcrastinatePeer:
    settings = {**vars(args), **overrides}
    return ProcrastinatePeer(
        settings["database_url"],
        workers=settings["workers"],
        concurrency=settings["concurrency"],
        pool_size=settings["pool_size"],
        polling_interval=settings["polling_interval"],
        sync_task=settings["sync_task"],
    )


def main(argv: list[str] | None = None) -> None:
    cli(
        "Procrastinate (PostgreSQL) peer: the four measurements.", _make, _arguments, VARIANTS, argv
    )


if __name__ == "__main__":
    main()
