"""Replay and verification speed (issue 6): seed N events through the command path, build
the read models, then measure

- replay: read the whole notification log in global order, decode every event and apply
  it to its aggregate (all aggregates held in memory), and
- verify: ``taskexec verify``'s work — every hash chain recomputed, every aggregate
  replayed and compared with its read-model row.

    python -m bench replay [--events 1000000] [--database-url postgresql://…] [--sqlite]
                           [--profile]

Seeding uses the aggregates' own command methods (submit, start, complete, fail, cancel)
and ``TaskService.save`` of a few thousand aggregates per transaction: the events are
the ones the service would record, written at bulk speed. Figures are printed, never
asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import functools
import os
import pstats
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from api.bootstrap import command_stores, read_models
from api.settings import Settings
from bench.common import DEFAULT_PG, EXAMPLE_INPUT, fresh_postgres, open_service
from commands.gc_pause import gc_paused
from commands.persistence import DatabaseConfig
from commands.service import TaskService
from domain.task import Task
from domain.values import ANONYMOUS, Actor, Priority
from projections.audit.verify import verify
from projections.db import Database
from projections.rebuild import Rebuilder

WORKER = Actor(id="bench-worker", kind="worker")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench replay")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--database-url", default=DEFAULT_PG)
    parser.add_argument("--sqlite", action="store_true", help="a SQLite file instead")
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL schema")
    parser.add_argument("--profile", action="store_true", help="cProfile replay and verify")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="verify processes")
    args = parser.parse_args(argv)
    if args.sqlite:
        with tempfile.TemporaryDirectory() as directory:
            url = f"sqlite:///{Path(directory) / 'replay.db'}"
            print(f"== replay on SQLite, {args.events:,} events ==")
            run(url, args.events, args.profile, args.jobs)
        return
    print(f"== replay on PostgreSQL, {args.events:,} events ==")
    with fresh_postgres(args.database_url, "replay", keep=args.keep) as url:
        print(f"(database {url})")
        run(url, args.events, args.profile, args.jobs)


def figure(label: str, count: int, seconds: float, note: str) -> None:
    rate = count / seconds if seconds > 0 else float("inf")
    print(f"{label:<8} {count:>10,} events in {seconds:7.1f}s {rate:>9,.0f} events/s  {note}")


def run(url: str, events: int, profile: bool, jobs: int) -> None:
    service = open_service(url)
    db = Database(DatabaseConfig.from_url(url))
    try:
        begin = time.perf_counter()
        seeded, tasks = seed_events(service, events)
        figure("seed", seeded, time.perf_counter() - begin, f"({tasks:,} tasks, command path)")

        begin = time.perf_counter()
        head = service.recorder.max_notification_id() or 0
        result = Rebuilder(service.read_log, lambda: head, read_models(), db).rebuild(drop_after=0)
        figure("rebuild", result.events, time.perf_counter() - begin, "(read models, for verify)")

        with profiled(profile):
            begin = time.perf_counter()
            replayed, aggregates = replay(service)
            took = time.perf_counter() - begin
        figure(
            "replay",
            replayed,
            took,
            f"(read + decode + apply, global order; {aggregates:,} aggregates)",
        )

        with profiled(profile):
            begin = time.perf_counter()
            report = verify(
                functools.partial(command_stores, Settings(database_url=url)), jobs=jobs
            )
            took = time.perf_counter() - begin
        figure(
            "verify", report.events, took, f"(chains + replay + read-model comparison, {jobs} jobs)"
        )
        print(f"         {report.summary()}")
    finally:
        db.close()
        service.close()


@contextlib.contextmanager
def profiled(enabled: bool) -> Iterator[None]:
    if not enabled:
        yield
        return
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        yield
    finally:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


def replay(service: TaskService, batch: int = 10_000) -> tuple[int, int]:
    """Every event in global order, decoded and applied; returns (events, aggregates)."""
    reader = service.event_reader
    decoder = service.event_decoder
    aggregates: dict[uuid.UUID, Any] = {}
    count = 0
    with gc_paused():
        for records in reader.by_position(batch=batch):
            for record in records:
                event = decoder.event(record, decoder.state(record), copy=False)
                aggregates[record.originator_id] = event.mutate(
                    aggregates.get(record.originator_id)
                )
            count += len(records)
    return count, len(aggregates)


def seed_events(service: TaskService, target: int, batch: int = 2000) -> tuple[int, int]:
    """About ``target`` events: tasks through submit, start, complete / fail / cancel, in
    the mix of ``bench.common.seed_tasks`` (per ten tasks: five completed, one failed, one
    cancelled, one running, two pending: 25 events), saved ``batch`` tasks at a time."""
    order = service.catalog.get("calculate-order-total")
    payment = service.catalog.get("process-payment")
    assert order is not None and payment is not None
    start = datetime(2026, 1, 1, tzinfo=UTC)
    events = tasks = 0
    while events < target:
        made: list[Task] = []
        for i in range(tasks, tasks + batch):
            at = start + timedelta(milliseconds=i)
            task = Task.submit(
                task_id=uuid.uuid4(),
                at=at,
                actor=ANONYMOUS,
                definition=payment if i % 4 == 0 else order,
                input=EXAMPLE_INPUT,
                workflow_instance_id=f"wf-{i // 5}",
                priority=list(Priority)[i % 4],
                definition_revision=1,
            )
            kind = i % 10
            later = at + timedelta(seconds=1)
            if kind <= 6:
                task.start(attempt=1, worker="bench-worker", at=later, actor=WORKER)
            if kind <= 4:
                task.complete(attempt=1, output={"total": 1.0}, at=later, actor=WORKER)
            elif kind == 5:
                task.fail(attempt=1, error_type="E", error_message="bench", at=later, actor=WORKER)
            elif kind == 7:
                task.cancel(reason="bench", force=False, at=later, actor=ANONYMOUS)
            made.append(task)
            events += len(task.pending_events)
            if events >= target:
                break
        service.save(*made)
        tasks += len(made)
    return events, tasks
