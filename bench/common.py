"""Helpers shared by the benchmarks: percentiles, fresh databases, seeding."""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from commands.catalog import DefinitionCatalog
from commands.messages import RecordReport
from commands.persistence import DatabaseConfig, prepare_database
from commands.service import TaskService
from domain.task import Task
from domain.values import ANONYMOUS, Priority

DEFAULT_PG = "postgresql://root@127.0.0.1:5432/test"
EXAMPLE_INPUT = {
    "orderId": "ORD-123",
    "items": [
        {"id": "ITEM-1", "quantity": 2, "price": 10.99},
        {"id": "ITEM-2", "quantity": 1, "price": 24.99},
    ],
}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary_ms(values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (
        f"p50 {statistics.median(ms):7.2f} ms  p99 {percentile(ms, 99):7.2f} ms  "
        f"max {max(ms):7.2f} ms  (n={len(ms)})"
    )


@contextmanager
def fresh_postgres(base_url: str, name: str, keep: bool = False) -> Iterator[str]:
    """A schema of its own for one benchmark run; dropped afterwards unless ``keep``."""
    schema = f"bench_{name}_{uuid.uuid4().hex[:8]}"
    url = f"{base_url}{'&' if '?' in base_url else '?'}schema={schema}"
    try:
        yield url
    finally:
        if not keep:
            conninfo = DatabaseConfig.from_url(base_url).conninfo()
            with psycopg.connect(conninfo, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def open_service(url: str) -> TaskService:
    config = DatabaseConfig.from_url(url)
    prepare_database(config)
    catalog = DefinitionCatalog.load()
    service = TaskService(config.eventsourcing_env(), catalog)
    catalog.set_revisions(service.register_definitions(catalog.all()))
    return service


def seed_tasks(
    service: TaskService,
    count: int,
    batch: int = 2000,
    report: Callable[[int], None] = lambda n: None,
) -> int:
    """``count`` tasks through the command path (the aggregate, then ``save`` in batches):
    every task submitted; of each ten, five completed, one failed, one cancelled, one
    running, two left pending. Returns the number of events recorded."""
    catalog = service.catalog
    order = catalog.get("calculate-order-total")
    payment = catalog.get("process-payment")
    assert order is not None and payment is not None
    start = datetime(2026, 1, 1, tzinfo=UTC)
    events = 0
    done = 0
    position = service.process_recorder.max_tracking_id("TASK_RESULTS") or 0
    while done < count:
        size = min(batch, count - done)
        tasks = []
        for i in range(done, done + size):
            definition = payment if i % 4 == 0 else order
            task = Task.submit(
                task_id=uuid.uuid4(),
                at=start + timedelta(milliseconds=i),
                actor=ANONYMOUS,
                definition=definition,
                input=EXAMPLE_INPUT,
                workflow_instance_id=f"wf-{i // 5}",
                priority=list(Priority)[i % 4],
                definition_revision=1,
            )
            tasks.append(task)
        service.save(*tasks)
        events += size
        reports: list[RecordReport] = []
        for offset, task in enumerate(tasks):
            kind = (done + offset) % 10
            at = start + timedelta(milliseconds=done + offset, seconds=1)
            if kind <= 6:
                reports.append(RecordReport(task.id, 1, "started", "bench-worker", at))
            if kind <= 4:
                reports.append(
                    RecordReport(task.id, 1, "completed", "bench-worker", at, output={"total": 1.0})
                )
            elif kind == 5:
                reports.append(
                    RecordReport(
                        task.id,
                        1,
                        "failed",
                        "bench-worker",
                        at,
                        error_type="E",
                        error_message="bench",
                    )
                )
        position += 1
        events += service.record_reports(reports)
        cancels = [t for k, t in enumerate(tasks) if (done + k) % 10 == 7]
        for task in cancels:
            task.cancel(reason="bench", force=False, at=start, actor=ANONYMOUS)
        if cancels:
            service.save(*cancels)
            events += len(cancels)
        done += size
        report(done)
    return events


def timed(fn: Callable[[], Any], repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        begin = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - begin)
    return samples
