"""The task projection and its runner against real databases (SQLite and PostgreSQL)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from commands.catalog import DefinitionCatalog
from commands.messages import CancelTask, RecordReport, SubmitTask
from commands.persistence import DatabaseConfig, prepare_database
from commands.service import TaskService
from domain.task import Task
from domain.values import ANONYMOUS
from projections.db import Database
from projections.definitions import DefinitionProjection
from projections.queries import TaskQueries
from projections.runner import ProjectionRunner, ProjectionStopped
from projections.schema import Projection
from projections.tasks import TaskProjection
from tests.conftest import EXAMPLE_INPUT, EXAMPLE_OUTPUT


@dataclass
class ReadSide:
    service: TaskService
    db: Database
    runner: ProjectionRunner
    queries: TaskQueries


@pytest.fixture
def read_side(database_url: str) -> Iterator[ReadSide]:
    config = DatabaseConfig.from_url(database_url)
    prepare_database(config)
    service = TaskService(config.eventsourcing_env(), DefinitionCatalog.load())
    db = Database(config)
    runner = ProjectionRunner(service.read_log, projections(), db, batch_size=7)
    runner.start()
    yield ReadSide(service, db, runner, TaskQueries(db))
    runner.stop()
    db.close()
    service.close()


def projections() -> list[Projection]:
    return [TaskProjection(), DefinitionProjection()]


def submit(service: TaskService, workflow: str = "wf") -> SubmitTask:
    return SubmitTask(
        definition_id="calculate-order-total",
        input=EXAMPLE_INPUT,
        actor=ANONYMOUS,
        workflow_instance_id=workflow,
    )


def test_rows_follow_the_task_through_its_life(read_side: ReadSide) -> None:
    service, runner, queries = read_side.service, read_side.runner, read_side.queries
    outcome = service.submit(submit(service, "wf-9"))
    runner.wait_for(outcome.position, timeout=5)

    row = queries.get(str(outcome.task_id))
    assert row is not None
    assert (row["status"], row["type"], row["priority"]) == ("PENDING", "AUTOMATED", "MEDIUM")
    assert row["workflow_instance_id"] == "wf-9"
    assert row["input"] == EXAMPLE_INPUT
    assert row["output"] is None and row["duration_ms"] is None

    started = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)
    ended = datetime(2030, 1, 1, 12, 0, 2, 500_000, tzinfo=UTC)
    reports = [
        RecordReport(outcome.task_id, 1, "started", "pod-7", started),
        RecordReport(outcome.task_id, 1, "completed", "pod-7", ended, output=EXAMPLE_OUTPUT),
    ]
    service.record_reports(reports)
    runner.wait_for(service.recorder.max_notification_id() or 0, timeout=5)

    row = queries.get(str(outcome.task_id))
    assert row is not None
    assert row["status"] == "COMPLETED"
    assert row["output"] == EXAMPLE_OUTPUT
    assert row["attempts"] == 1
    assert row["execution_environment"] == "pod-7"
    assert row["start_time"] == "2030-01-01T12:00:00.000000Z"
    assert row["end_time"] == "2030-01-01T12:00:02.500000Z"
    assert row["duration_ms"] == 2500
    assert row["version"] == 3


def test_batches_and_restart_resume_without_reapplying(read_side: ReadSide) -> None:
    service, runner = read_side.service, read_side.runner
    outcomes = [service.submit(submit(service)) for _ in range(20)]  # 3 batches of 7
    service.cancel(CancelTask(outcomes[0].task_id, ANONYMOUS))
    last = service.recorder.max_notification_id() or 0
    runner.wait_for(last, timeout=5)
    runner.stop()

    # A new runner over the same tables starts at the stored position: nothing reapplied
    # (a reapplied Submitted would violate the primary key and stop the runner).
    again = ProjectionRunner(service.read_log, projections(), read_side.db)
    again.start()
    try:
        assert again.position == last
        extra = service.submit(submit(service))
        again.wait_for(extra.position, timeout=5)
        assert again.error is None
    finally:
        again.stop()
    with read_side.db.read() as cur:
        count = cur.execute("SELECT COUNT(*) AS n FROM task_view_g1").fetchone()
    assert count is not None and count["n"] == 21
    row = read_side.queries.get(str(outcomes[0].task_id))
    assert row is not None and row["status"] == "CANCELLED"


def test_an_event_that_cannot_be_applied_stops_the_projection_not_the_reads(
    read_side: ReadSide, caplog: pytest.LogCaptureFixture
) -> None:
    service, queries = read_side.service, read_side.queries
    good = service.submit(submit(service))
    read_side.runner.wait_for(good.position, timeout=5)
    read_side.runner.stop()

    # A Started event for a task the read model has never seen, at position 999.
    orphan = Task.Started(  # type: ignore[call-arg]
        originator_id=uuid4(),
        originator_version=2,
        timestamp=datetime.now(UTC),
        actor={"id": "w", "kind": "worker"},
        attempt=1,
        worker="w",
        prev_hash="0" * 64,
        hash="0" * 64,
    )

    def read_log(after: int, limit: int) -> list[tuple[int, object]]:
        return [(999, orphan)] if after < 999 else []

    broken = ProjectionRunner(read_log, projections(), read_side.db)
    with caplog.at_level(logging.ERROR):
        broken.start()
        with pytest.raises(ProjectionStopped, match="notification 999"):
            broken.wait_for(999, timeout=5)
    broken.stop()
    assert any("notification 999" in record.getMessage() for record in caplog.records)
    # The rows written before still answer.
    row = queries.get(str(good.task_id))
    assert row is not None and row["status"] == "PENDING"


def test_only_one_runner_is_active_on_postgres_and_a_standby_takes_over(
    postgres_url: str,
) -> None:
    config = DatabaseConfig.from_url(postgres_url)
    prepare_database(config)
    service = TaskService(config.eventsourcing_env(), DefinitionCatalog.load())
    databases = [Database(config), Database(config)]
    channel = getattr(service.recorder, "channel_name", None)
    first, second = (
        ProjectionRunner(service.read_log, projections(), db, listen_channel=channel)
        for db in databases
    )
    try:
        first.start()
        for _ in range(100):  # the first one takes the lock
            if first.active:
                break
            threading.Event().wait(0.02)
        second.start()
        threading.Event().wait(0.3)
        assert first.active
        assert not second.active

        outcome = service.submit(submit(service))
        # The standby follows the recorded position: read-your-writes on any replica.
        second.wait_for(outcome.position, timeout=5, poke=False)

        first.stop()
        later = service.submit(submit(service))
        second.wait_for(later.position, timeout=10, poke=False)
        assert second.active
        assert second.error is None
    finally:
        first.stop()
        second.stop()
        for db in databases:
            db.close()
        service.close()
