"""The batched task projection writes exactly the rows the plain per-event algorithm gives,
whether a task's events fall in one batch (collapsed into one INSERT) or in many
(UPDATEs), live or rebuilt; and a bad event still stops it naming its notification."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from api.bootstrap import read_models
from commands.persistence import DatabaseConfig, prepare_database
from commands.service import TaskService
from domain.task import Task
from projections.db import Database
from projections.rebuild import Rebuilder
from projections.runner import ProjectionRunner, ProjectionStopped
from tests.read_side_support import make_history, reference_rows

ACTOR = {"id": "w", "kind": "worker"}


def dump(db: Database, table: str) -> list[dict[str, Any]]:
    with db.read() as cur:
        return cur.execute(f"SELECT * FROM {table}").fetchall()


def counts(db: Database, generation: int) -> Counter[tuple[str, str]]:
    rows = dump(db, f"task_counts_g{generation}")
    return Counter({(r["status"], r["type"]): r["n"] for r in rows if r["n"]})


@pytest.mark.parametrize(("batch_size", "catch_up_size"), [(7, 7), (7, 30), (5000, 20_000)])
def test_rows_live_and_rebuilt_are_the_per_event_rows(
    service: TaskService, database_url: str, batch_size: int, catch_up_size: int
) -> None:
    """Whatever the batches (fixed, growing while behind, one for everything)."""
    make_history(service, tasks=80)
    events = service.read_log(0, 100_000)
    expected = reference_rows(events)
    assert {row["status"] for row in expected.values()} >= {
        "PENDING",
        "RUNNING",
        "COMPLETED",
        "FAILED",
        "TIMED_OUT",
        "CANCELLED",
    }
    kinds = {type(e) for _, e in events}
    assert {Task.RetryScheduled, Task.TimedOut, Task.Cancelled, Task.Failed, Task.Requeued} <= kinds
    assert {row["error_type"] for row in expected.values()} >= {None, "E", "TIMEOUT"}

    db = Database(DatabaseConfig.from_url(database_url))
    try:
        runner = ProjectionRunner(
            service.read_log, read_models(), db, batch_size=batch_size, catch_up_size=catch_up_size
        )
        runner.prepare()
        while runner.run_once():
            pass
        assert runner.position == events[-1][0]
        live = {row["id"]: row for row in dump(db, "task_view_g1")}
        assert live == expected
        wanted = Counter((row["status"], row["type"]) for row in expected.values())
        assert counts(db, 1) == wanted

        Rebuilder(
            service.read_log, lambda: events[-1][0], read_models(), db, batch_size=batch_size
        ).rebuild(drop_after=0)
        rebuilt = {row["id"]: row for row in dump(db, "task_view_g2")}
        assert rebuilt == expected
        assert counts(db, 2) == wanted
    finally:
        db.close()


def _events_of_one_task(bad_retry_at: str) -> list[tuple[int, Any]]:
    """Submitted, Started, RetryScheduled (with ``bad_retry_at``), Started of one task."""
    task_id, at = uuid4(), datetime(2026, 1, 1, tzinfo=UTC)
    common: dict[str, Any] = {"originator_id": task_id, "actor": ACTOR, "prev_hash": "0" * 64}
    submitted = Task.Submitted(  # type: ignore[call-arg]
        **common,
        originator_version=1,
        timestamp=at,
        originator_topic="taskexec.task.v1",
        definition_id="calculate-order-total",
        definition_version="1.2.0",
        task_type="AUTOMATED",
        workflow_instance_id=None,
        input={},
        priority="MEDIUM",
        timeout_ms=1000,
        retry_policy={},
        execution={},
        hash="1" * 64,
    )
    started = Task.Started(  # type: ignore[call-arg]
        **common, originator_version=2, timestamp=at, attempt=1, worker="w", hash="2" * 64
    )
    retry = Task.RetryScheduled(  # type: ignore[call-arg]
        **common,
        originator_version=3,
        timestamp=at + timedelta(seconds=1),
        attempt=1,
        error_type="E",
        error_message="m",
        retry_at=bad_retry_at,
        hash="3" * 64,
    )
    again = Task.Started(  # type: ignore[call-arg]
        **common, originator_version=4, timestamp=at, attempt=2, worker="w", hash="4" * 64
    )
    return [(11, submitted), (12, started), (13, retry), (14, again)]


def test_a_bad_event_among_one_tasks_collapsed_events_names_its_notification(
    database_url: str, service: TaskService, caplog: pytest.LogCaptureFixture
) -> None:
    events = _events_of_one_task(bad_retry_at="not a time")

    def read_log(after: int, limit: int) -> list[tuple[int, Any]]:
        return [item for item in events if item[0] > after][:limit]

    db = Database(DatabaseConfig.from_url(database_url))
    runner = ProjectionRunner(read_log, read_models(), db, batch_size=100)
    try:
        with caplog.at_level(logging.ERROR):
            runner.start()
            with pytest.raises(ProjectionStopped, match="notification 13"):
                runner.wait_for(14, timeout=5)
        assert any("notification 13" in r.getMessage() for r in caplog.records)
        assert runner.position == 0  # the batch was rolled back whole
        assert dump(db, "task_view_g1") == []
    finally:
        runner.stop()
        db.close()


def test_the_same_events_with_a_good_time_apply(database_url: str) -> None:
    events = _events_of_one_task(bad_retry_at="2026-01-01T00:01:00+00:00")
    config = DatabaseConfig.from_url(database_url)
    prepare_database(config)
    db = Database(config)
    runner = ProjectionRunner(lambda a, n: [e for e in events if e[0] > a][:n], read_models(), db)
    try:
        runner.prepare()
        assert runner.run_once() == 4
        (row,) = dump(db, "task_view_g1")
        assert row == reference_rows(events)[row["id"]]
        assert (row["status"], row["attempts"], row["version"]) == ("RUNNING", 2, 4)
    finally:
        db.close()
