"""Celery 5.7 on Redis (broker and result backend): the peer for the side-by-side benchmark.

    python -m bench.peers.celery_peer --tasks 3000          # the four measurements
    python -m bench.peers.celery_peer --compare --repeats 5 # re-weigh the worker settings

Worker: ``celery -A bench.peers.celery_worker worker --pool threads --concurrency 4
--loglevel WARNING --without-gossip --without-mingle --without-heartbeat``, with
``worker_prefetch_multiplier=64``, early acks (Celery's default), JSON, results stored in
Redis (``task_ignore_result=False``). Why:

* The task is microseconds of pure Python: what costs is Celery's per-message work
  (receive, decode, run, store + publish the result, ack), not the task. The prefork pool
  adds a pipe round trip to a child process and a process switch per task; a thread pool
  runs it in the consumer process. On 2 cores shared with the client and Redis, fewer
  busy processes also means less fighting for the cores. Measured (docs/benchmarks.md), threads
  x4 and solo beat prefork x2 (~1.5-2x under load, ~10-30 % less worker CPU per task);
  threads x4 rather than solo because it is a production shape (solo runs one task at a
  time, which only suits a trivial task) and won more of the interleaved rounds.
* prefetch 64: the optimizing guide says "If you have lots of short tasks … you want
  this number to be large. Say 64, or 128"; 4 (the default) vs 64 vs 128 were within the
  noise here, 64 is the guide's own number.
* gossip/mingle/heartbeat are inter-worker chatter for multi-node clusters; a single
  worker does not need them (the usual single-node advice).
* WARNING is the worker's default log level: no line per task.
* Early ack is Celery's default and what a throughput-minded user runs. ``--acks-late``
  (at-least-once, closer to what our service promises) measured the same within noise.
  Either way Redis here keeps nothing on disk: nothing Celery accepts survives a Redis
  restart, so its "submitted" is weaker than a committed PostgreSQL row.
* gevent (x8, x50) was tried and was the worst (2-3x the worker CPU per task: it patches
  sockets for I/O-bound work this task does not have); eventlet is deprecated. Neither is
  in the ``bench`` extra.

The client sends with ``apply_async`` (one call per task, which also SUBSCRIBEs to the
task's result channel: the Redis backend's way of pushing results) or with
``group(...).apply_async()`` (the batch form: one producer, one connection). It learns of
completion through the result backend (``AsyncResult.get`` / ``ResultSet.get`` ->
``join_native``: pub/sub push, no polling) and every result is compared with the expected
output. The private Redis database (9 by default) is flushed before and after, and
teardown checks that it is empty.

Measured for these settings, and tried: docs/benchmarks.md ("The peers' settings")."""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
import uuid
from collections.abc import Mapping
from contextlib import ExitStack
from typing import Any, Self

import redis
from celery import group
from celery.exceptions import TimeoutError as CeleryTimeout
from celery.result import AsyncResult, ResultSet

from bench.peers.celery_app import make_app
from bench.peers.cli import cli
from bench.peers.common import Workers, open_loop, sigint_ignored, sigterm_as_exit
from bench.peers.orders import EXAMPLE_INPUT, EXPECTED_OUTPUT, TASK_NAME
from bench.resources import pids_named


class CeleryPeer:
    """Celery worker(s) as subprocesses on a private Redis database; see the module doc."""

    name = "celery"

    def __init__(
        self,
        redis_url: str = "redis://127.0.0.1:6379",
        db: int = 9,
        *,
        pool: str = "threads",
        concurrency: int = 4,
        prefetch_multiplier: int = 64,
        acks_late: bool = False,
    ) -> None:
        self.url = f"{redis_url.rstrip('/')}/{db}"
        self.pool = pool
        self.concurrency = concurrency
        self.prefetch_multiplier = prefetch_multiplier
        self.acks_late = acks_late
        self.name = f"celery ({pool} x{concurrency}, prefetch {prefetch_multiplier}"
        self.name += ", acks late)" if acks_late else ")"
        self._app = make_app(self.url, prefetch_multiplier=prefetch_multiplier, acks_late=acks_late)
        self._task = self._app.tasks[TASK_NAME]
        self._stack = ExitStack()
        self._workers: Workers | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> Self:
        with ExitStack() as stack:
            stack.enter_context(sigterm_as_exit())
            stack.callback(self._flush, verify=True)  # runs last: after workers are gone
            stack.callback(self._app.close)
            self._flush(verify=False)
            self._workers = stack.enter_context(Workers([self._worker_command()], self._env()))
            self._warm_up()
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._workers = None
        with sigint_ignored():
            self._stack.close()

    def processes(self) -> dict[str, list[int]]:
        """For ``bench.resources.Meter``: the worker (with its pool), and Redis, the broker."""
        assert self._workers is not None
        return {"worker": self._workers.pids, "redis-server": pids_named("redis-server")}

    def _worker_command(self) -> list[str]:
        return [
            sys.executable, "-m", "celery", "-A", "bench.peers.celery_worker", "worker",
            "--pool", self.pool, "--concurrency", str(self.concurrency),
            "--loglevel", "WARNING", "--without-gossip", "--without-mingle",
            "--without-heartbeat", "--hostname", f"bench-{uuid.uuid4().hex[:8]}@%h",
        ]  # fmt: skip

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "BENCH_CELERY_URL": self.url,
            "BENCH_CELERY_PREFETCH": str(self.prefetch_multiplier),
            "BENCH_CELERY_ACKS_LATE": "1" if self.acks_late else "0",
        }

    def _flush(self, verify: bool) -> None:
        """Empty the private database; after teardown, check that it stayed empty."""
        client = redis.Redis.from_url(self.url)
        try:
            client.flushdb()
            if verify and (left := client.dbsize()):
                raise RuntimeError(f"{left} Redis keys left in {self.url} after teardown")
        finally:
            client.close()

    def _warm_up(self, timeout: float = 60.0) -> None:
        """Wait for the worker to answer, then run a few tasks through every child."""
        assert self._workers is not None
        first = self._submit()
        deadline = time.monotonic() + timeout
        while True:
            self._workers.check_alive()
            try:
                first.get(timeout=1.0)
                break
            except CeleryTimeout:
                if time.monotonic() > deadline:
                    raise
        self._collect([self._submit() for _ in range(50 * self.concurrency)])

    # -- the four measurements ---------------------------------------------------------------

    def _submit(self) -> AsyncResult:
        return self._task.apply_async((EXAMPLE_INPUT,))

    def _settle(self) -> None:
        """Finish the previous measurement's client-side cleanup before timing the next.

        Each AsyncResult unsubscribes from its result channel when it is freed, and
        thousands of them sit in reference cycles until the garbage collector runs: left
        alone, that bill (over a second after a 3000-task run) lands on whichever sample
        happens to trigger the collection, typically the first idle-latency one. An
        untimed round trip afterwards flushes any unsubscribe that was deferred.
        """
        gc.collect()
        _verify([self._submit().get(timeout=_timeout(1))], 1)

    def _get_all(self, results: ResultSet) -> list[Any]:
        """Every result's value, through one pub/sub stream (``join_native``).

        A run that stalls fails with what Redis holds at that moment (results stored, queue
        length, unacked messages) and the worker's last output, not just "timed out".
        """
        try:
            values: list[Any] = results.get(timeout=_timeout(len(results)), propagate=True)
        except CeleryTimeout as exc:
            raise TimeoutError(self._diagnose(results)) from exc
        return values

    def _diagnose(self, results: ResultSet) -> str:
        ids = [result.id for result in results.results]
        client = redis.Redis.from_url(self.url)
        try:
            stored = sum(v is not None for v in client.mget([f"celery-task-meta-{i}" for i in ids]))
            queued, unacked = client.llen("celery"), client.hlen("unacked")
        finally:
            client.close()
        seen = sum(1 for result in results.results if result.ready())
        tail = self._workers.tail() if self._workers else ""
        return (
            f"{len(ids)} tasks: {stored} results stored in Redis, {seen} seen by the "
            f"client, {queued} still queued, {unacked} unacked; worker output:\n{tail}"
        )

    def _collect(self, results: list[AsyncResult]) -> None:
        _verify(self._get_all(ResultSet(results, app=self._app)), len(results))

    def throughput(self, n: int) -> float:
        self._settle()
        begin = time.perf_counter()
        results = [self._submit() for _ in range(n)]
        values = self._get_all(ResultSet(results, app=self._app))
        elapsed = time.perf_counter() - begin
        _verify(values, n)
        return n / elapsed

    def throughput_bulk(self, n: int) -> float | None:
        self._settle()
        begin = time.perf_counter()
        values = self._get_all(group(self._task.s(EXAMPLE_INPUT) for _ in range(n)).apply_async())
        elapsed = time.perf_counter() - begin
        _verify(values, n)
        return n / elapsed

    def submit_latency(self, rate: float, seconds: float) -> list[float]:
        self._settle()
        latencies, results = open_loop(rate, seconds, self._submit)
        self._collect(results)  # drain, so the next measurement starts idle
        return latencies

    def idle_latency(self, samples: int) -> list[float]:
        self._settle()
        latencies = []
        for _ in range(samples):
            begin = time.perf_counter()
            value = self._submit().get(timeout=_timeout(1))
            latencies.append(time.perf_counter() - begin)
            _verify([value], 1)
        return latencies


def _timeout(n: int) -> float:
    """Generous: a run on a busy 2-core machine can crawl to a few dozen tasks/s."""
    return 60.0 + n / 20


def _verify(values: list[Any], n: int) -> None:
    wrong = sum(1 for value in values if value != EXPECTED_OUTPUT)
    if len(values) != n or wrong:
        raise AssertionError(
            f"expected {n} results {EXPECTED_OUTPUT}, got {len(values)} of which {wrong} differ"
        )


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379")
    parser.add_argument("--db", type=int, default=9, help="private Redis DB, flushed")
    parser.add_argument("--pool", default="threads", choices=["prefork", "threads", "solo"])
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--prefetch", type=int, default=64, help="worker_prefetch_multiplier")
    parser.add_argument("--acks-late", action="store_true", help="task_acks_late=True")


#: ``--compare``: the worker shapes worth weighing for this workload on 2 cores.
VARIANTS: dict[str, dict[str, Any]] = {
    "prefork x2, prefetch 4 (Celery defaults)": {
        "pool": "prefork",
        "concurrency": 2,
        "prefetch": 4,
    },
    "prefork x2, prefetch 64": {"pool": "prefork", "concurrency": 2},
    "threads x4, prefetch 64 (chosen)": {"pool": "threads", "concurrency": 4},
    "threads x4, prefetch 64, acks late": {"pool": "threads", "concurrency": 4, "acks_late": True},
    "solo, prefetch 64": {"pool": "solo", "concurrency": 1},
}


def _make(args: argparse.Namespace, overrides: Mapping[str, Any]) -> CeleryPeer:
    settings = {**vars(args), **overrides}
    return CeleryPeer(
        settings["redis_url"],
        settings["db"],
        pool=settings["pool"],
        concurrency=settings["concurrency"],
        prefetch_multiplier=settings["prefetch"],
        acks_late=settings["acks_late"],
    )


def main(argv: list[str] | None = None) -> None:
    cli("Celery + Redis peer: the four measurements.", _make, _arguments, VARIANTS, argv)


if __name__ == "__main__":
    main()
