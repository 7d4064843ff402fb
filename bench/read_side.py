"""The read side at scale (issue 3): seed tasks through the command path, then measure
projection catch-up and rebuild, task and list query latencies (in process and over
loopback HTTP), and the lag from commit to visible under continuous submissions.

    python -m bench read_side [--tasks 1000000] [--database-url postgresql://…]
                              [--sqlite-tasks 200000] [--baseline DIR [--repeat 3]]

``--baseline DIR`` (a checkout of older code, e.g. ``git archive <commit> | tar -x -C
DIR``) also measures catch-up and rebuild by that code and by this one, alternately, on
the same seeded store: the machine is shared and noisy, so only figures taken side by
side in one run compare. CPU µs per event (of this process, all threads) is steadier than
events/s; on PostgreSQL it leaves out the server's work.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path

import uvicorn

from api.bootstrap import read_models
from api.http.app import create_app
from api.http.tasks import to_response
from api.runtime import Runtime
from api.settings import Settings
from bench.common import (
    DEFAULT_PG,
    EXAMPLE_INPUT,
    fresh_postgres,
    open_service,
    seed_tasks,
    summary_ms,
    timed,
)
from bench.loadgen import Client
from commands.messages import SubmitTask
from commands.persistence import DatabaseConfig
from domain.values import ANONYMOUS, Actor
from projections.db import Database
from projections.rebuild import Rebuilder
from projections.runner import ProjectionRunner


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench read_side")
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--sqlite-tasks", type=int, default=200_000)
    parser.add_argument("--database-url", default=DEFAULT_PG)
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL schema")
    parser.add_argument(
        "--queries-only", metavar="URL", help="only measure queries on an earlier --keep run"
    )
    parser.add_argument(
        "--rebuild-only", metavar="URL", help="only time a rebuild of an earlier --keep run"
    )
    parser.add_argument("--baseline", metavar="DIR", help="also measure this checkout's code")
    parser.add_argument("--repeat", type=int, default=3, help="runs per code with --baseline")
    parser.add_argument(
        "--compare-only", metavar="URL", help="only the --baseline comparison, on a kept store"
    )
    args = parser.parse_args(argv)
    if args.compare_only:
        compare(args.compare_only, args.baseline, args.repeat)
        return
    if args.rebuild_only:
        time_rebuild(args.rebuild_only)
        return
    if args.queries_only:
        measure_queries(args.queries_only)
        return

    print(f"== read side on PostgreSQL, {args.tasks:,} tasks ==")
    with fresh_postgres(args.database_url, "read_side", keep=args.keep) as url:
        print(f"(database {url})")
        run_backend(url, args.tasks, queries=True, baseline=args.baseline, repeat=args.repeat)
    print(f"\n== read side on SQLite, {args.sqlite_tasks:,} tasks ==")
    with tempfile.TemporaryDirectory() as tmp:
        run_backend(
            f"sqlite:///{Path(tmp) / 'bench.db'}",
            args.sqlite_tasks,
            queries=False,
            baseline=args.baseline,
            repeat=args.repeat,
        )


def run_backend(
    url: str, tasks: int, queries: bool, baseline: str | None = None, repeat: int = 3
) -> None:
    service = open_service(url)
    begin = time.perf_counter()
    events = seed_tasks(service, tasks, report=lambda n: _tick("seeded", n, tasks, begin))
    seconds = time.perf_counter() - begin
    print(
        f"\nseed: {tasks:,} tasks, {events:,} events in {seconds:.1f}s "
        f"({events / seconds:,.0f} events/s through the command path)"
    )

    db = Database(DatabaseConfig.from_url(url))
    runner = ProjectionRunner(service.read_log, read_models(), db, batch_size=5000)
    runner.prepare()
    begin = time.perf_counter()
    applied = 0
    while count := runner.run_once():
        applied += count
    seconds = time.perf_counter() - begin
    print(f"catch-up: {applied:,} events in {seconds:.1f}s = {applied / seconds:,.0f} events/s")

    rebuilder = Rebuilder(
        service.read_log, lambda: service.recorder.max_notification_id() or 0, read_models(), db
    )
    result = rebuilder.rebuild(drop_after=0)
    print(
        f"rebuild: {result.events:,} events in {result.seconds:.1f}s = "
        f"{result.events / result.seconds:,.0f} events/s (until the switch; dropping "
        f"the old tables {result.cleanup_seconds:.1f}s more)"
    )
    db.close()
    service.close()
    if baseline:
        compare(url, baseline, repeat)
    if queries:
        measure_queries(url)


def compare(url: str, baseline: str | None, repeat: int) -> None:
    """Catch-up and rebuild by the baseline's code and by this code, alternately, each
    in a fresh process (``bench/projection_run.py``) on the same store."""
    here = str(Path(__file__).resolve().parent.parent)
    codes = {"this": here} if baseline is None else {"baseline": baseline, "this": here}
    script = str(Path(__file__).with_name("projection_run.py"))
    results: dict[str, list[dict[str, float]]] = {name: [] for name in codes}
    print(f"catch-up and rebuild, {repeat} runs each, alternating:")
    for run in range(repeat):
        for name, root in codes.items():
            env = {**os.environ, "PYTHONPATH": root}
            out = subprocess.run(
                [sys.executable, script, url], env=env, capture_output=True, text=True
            )
            if out.returncode != 0:
                sys.exit(f"{name} run failed:\n{out.stderr}")
            figures = json.loads(out.stdout.strip().splitlines()[-1])
            results[name].append(figures)
            print(f"  run {run + 1} {name:8} {_figures(figures)}")
    print("median:")
    for name, runs in results.items():
        median = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        print(f"  {name:8} {_figures(median)}")


def _figures(f: dict[str, float]) -> str:
    return (
        f"catch-up {f['catch_up']:8,.0f} events/s ({f['catch_up_cpu_us']:5.1f} µs CPU/event)"
        f"   rebuild {f['rebuild']:8,.0f} events/s ({f['rebuild_cpu_us']:5.1f} µs CPU/event;"
        f" {f['rebuild_to_switch']:,.0f} until the switch)"
    )


def time_rebuild(url: str) -> None:
    service = open_service(url)
    db = Database(DatabaseConfig.from_url(url))
    try:
        rebuilder = Rebuilder(
            service.read_log,
            lambda: service.recorder.max_notification_id() or 0,
            read_models(),
            db,
        )
        result = rebuilder.rebuild(drop_after=0)
        print(
            f"rebuild: {result.events:,} events in {result.seconds:.1f}s = "
            f"{result.events / result.seconds:,.0f} events/s (until the switch; dropping "
            f"the old tables {result.cleanup_seconds:.1f}s more)"
        )
    finally:
        db.close()
        service.close()


def measure_queries(url: str) -> None:
    runtime = Runtime.open(Settings(database_url=url, rate_limit="off", rate_limit_bulk="off"))
    try:
        ids = [row["id"] for row in runtime.list_tasks(limit=100).items]
        ids += [row["id"] for row in runtime.list_tasks(status="FAILED", limit=100).items]
        rng = random.Random(7)
        sample = [rng.choice(ids) for _ in range(2000)]
        it = iter(sample)
        get = timed(lambda: to_response(runtime.queries.get(next(it))), 2000)  # type: ignore[arg-type]
        print(f"GET task, in process (query + body): {summary_ms(get)}")

        total = runtime.list_tasks().total_items
        filters = {
            "status": {"status": "COMPLETED"},
            "type": {"task_type": "INTEGRATION"},
            "workflow": {"workflow_instance_id": "wf-4242"},
            "all three": {
                "status": "COMPLETED",
                "task_type": "AUTOMATED",
                "workflow_instance_id": "wf-4242",
            },
            "none": {},
        }
        for name, kwargs in filters.items():
            last = max(1, runtime.list_tasks(**kwargs).total_pages)
            for page in (1, 10, last):
                samples = timed(partial(runtime.list_tasks, page=page, **kwargs), 200)
                print(f"list {name:9} page {page:>7}: {summary_ms(samples)}")
        print(f"(totalItems without filter: {total:,})")
        measure_http(runtime, sample)
        measure_lag(runtime, url)
    finally:
        runtime.close()


def measure_http(runtime: Runtime, sample: list[str]) -> None:
    """``GET /api/v1/tasks/{id}`` over loopback HTTP, one request at a time on a
    keep-alive connection. The server runs in a thread of this process, so the client
    shares its GIL: it is bench/loadgen.py's (a few µs per request), not httpx (several
    hundred, which would be counted in the server's latency)."""
    app = create_app(runtime, None)
    app.on_startup.clear()
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    key, _ = runtime.apikeys.create(
        name="bench", permissions=["tasks:read"], actor=Actor("bench", "operator")
    )
    samples = asyncio.run(_get_tasks(port, key, sample))
    print(f"GET task over loopback HTTP: {summary_ms(samples)}")
    server.should_exit = True
    thread.join(5)


async def _get_tasks(port: int, key: str, task_ids: list[str]) -> list[float]:
    client = Client("127.0.0.1", port, {"X-API-Key": key})
    requests = [client.build("GET", f"/api/v1/tasks/{task_id}") for task_id in task_ids]
    samples = []
    async with client.connection() as conn:
        for raw in requests[:100]:  # warm up
            await conn.request(raw)
        for raw in requests:
            begin = time.perf_counter()
            response = await conn.request(raw)
            samples.append(time.perf_counter() - begin)
            if response.status != 200:
                raise RuntimeError(f"GET answered {response.status}: {response.body[:200]!r}")
    await client.close()
    return samples


def measure_lag(runtime: Runtime, url: str, rate: float = 200.0, seconds: float = 10.0) -> None:
    """Another writer (as another API replica would) submits at ``rate``/s; the lag is
    commit -> applied by this process's runner, woken by LISTEN/NOTIFY or its poll."""
    writer = open_service(url)
    lags: list[float] = []
    command = SubmitTask(
        definition_id="calculate-order-total", input=EXAMPLE_INPUT, actor=ANONYMOUS
    )
    interval = 1.0 / rate
    next_at = time.perf_counter()
    end = next_at + seconds
    while next_at < end:
        time.sleep(max(0.0, next_at - time.perf_counter()))
        outcome = writer.submit(command)
        committed = time.perf_counter()
        runtime.runner.wait_for(outcome.position, 5, poke=False)
        lags.append(time.perf_counter() - committed)
        next_at += interval
    writer.close()
    print(f"lag commit -> read model at {rate:.0f} submits/s: {summary_ms(lags)}")


def _tick(label: str, done: int, total: int, begin: float) -> None:
    if done == total or done % 50_000 == 0:
        rate = done / max(time.perf_counter() - begin, 1e-9)
        print(f"\r{label} {done:,}/{total:,} ({rate:,.0f} tasks/s)", end="", flush=True)


if __name__ == "__main__":
    main()
