"""The rows the task projection keeps from its own batches, and the check that lets a
live batch skip reading generation and position (projections/runner.py, tasks.py), on
SQLite and PostgreSQL: what is kept is used only while every write since was this
runner's own."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest

from api.bootstrap import read_models
from commands.messages import RecordReport, SubmitTask
from commands.service import TaskService
from domain.definition_record import DefinitionRecord
from domain.values import ANONYMOUS
from projections import runner as runner_module
from projections import schema
from projections.db import Database
from projections.queries import TaskQueries
from projections.rebuild import Rebuilder
from projections.runner import ProjectionRunner
from projections.schema import ApplyError
from projections.tasks import TaskProjection
from tests.conftest import EXAMPLE_INPUT, EXAMPLE_OUTPUT

STARTED = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)
ENDED = datetime(2030, 1, 1, 12, 0, 1, tzinfo=UTC)
DOCUMENT = {"id": "not-registered", "name": "n", "type": "t", "version": "1.0.0"}


def submit(service: TaskService) -> str:
    command = SubmitTask("calculate-order-total", EXAMPLE_INPUT, ANONYMOUS)
    return str(service.submit(command).task_id)


def report(task_id: str, kind: str, **fields: Any) -> RecordReport:
    at = STARTED if kind == "started" else ENDED
    return RecordReport(UUID(task_id), 1, kind, "pod-b", at, **fields)


@pytest.fixture
def moves(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Every verdict of the runner on a failed batch: was it the check of a batch
    checked at its commit (True: the batch runs again the long way)?"""
    verdicts: list[bool] = []
    real = schema.moved

    def spy(exc: BaseException) -> bool:
        verdicts.append(real(exc))
        return verdicts[-1]

    monkeypatch.setattr(runner_module, "moved", spy)
    return verdicts


def kept(runner: ProjectionRunner) -> dict[str, Any]:
    return tasks_of(runner)._kept


def tasks_of(runner: ProjectionRunner) -> TaskProjection:
    (tasks,) = [p for p in runner._projections if isinstance(p, TaskProjection)]
    return tasks


def running_with_one_task(service: TaskService, read_db: Database) -> tuple[ProjectionRunner, str]:
    """A runner that has applied one submit (and keeps its row)."""
    runner = ProjectionRunner(service.read_log, read_models(), read_db)
    runner.prepare()
    task_id = submit(service)
    runner.run_once()
    assert task_id in kept(runner)
    return runner, task_id


def test_a_batch_after_another_runner_wrote_reads_the_rows_it_wrote(
    service: TaskService, read_db: Database, moves: list[bool]
) -> None:
    # Runner A applies a submit and keeps the PENDING row; runner B (a replica that took
    # over for a moment, say) applies the start; then A applies the completion. A must
    # build on B's row (start time, worker), not on the PENDING row it kept.
    a = ProjectionRunner(service.read_log, read_models(), read_db)
    b = ProjectionRunner(service.read_log, read_models(), read_db)
    a.prepare()
    task_id = submit(service)
    assert a.run_once() > 0
    assert task_id in kept(a)

    service.record_reports([report(task_id, "started")])
    b.prepare()  # from where A left the read model
    assert b.run_once() == 1

    service.record_reports([report(task_id, "completed", output=EXAMPLE_OUTPUT)])
    assert a.run_once() == 1
    row = TaskQueries(read_db).get(task_id)
    assert row is not None
    assert row["status"] == "COMPLETED"
    assert row["start_time"] == "2030-01-01T12:00:00.000000Z"
    assert row["execution_environment"] == "pod-b"
    assert row["version"] == 3
    if read_db.postgres:  # found by the check at commit, then applied the long way
        assert moves == [True]
    assert task_id not in kept(a)  # finished: nothing to keep


def test_a_rebuild_between_two_batches_sends_the_next_one_to_the_new_generation(
    service: TaskService, read_db: Database, moves: list[bool]
) -> None:
    runner, task_id = running_with_one_task(service, read_db)
    head = service.recorder.max_notification_id() or 0
    result = Rebuilder(service.read_log, lambda: head, read_models(), read_db).rebuild(drop_after=0)
    assert result.new_generation == 2

    service.record_reports([report(task_id, "started")])
    assert runner.run_once() == 1
    with read_db.read() as cur:
        row = cur.execute("SELECT status, version FROM task_view_g2 WHERE id = ?", (task_id,))
        assert row.fetchone() == {"status": "RUNNING", "version": 2}
    if read_db.postgres:
        assert moves == [True]
    # What it keeps now belongs to the new generation.
    assert tasks_of(runner)._kept_generation == 2 and task_id in kept(runner)


def test_a_batch_that_fails_keeps_nothing_of_it(
    service: TaskService, read_db: Database, moves: list[bool]
) -> None:
    runner, task_id = running_with_one_task(service, read_db)
    service.record_reports([report(task_id, "started")])
    with read_db.transaction() as cur:  # a row the batch's UPDATE cannot write
        cur.execute("DROP TABLE task_counts_g1")
    with pytest.raises(Exception, match="task_counts_g1"):
        runner.run_once()
    assert kept(runner) == {}
    # A real failure, not the check: raised, not retried (only PostgreSQL has the check).
    assert moves == ([False] if read_db.postgres else [])
    with read_db.read() as cur:
        row = cur.execute("SELECT status FROM task_view_g1 WHERE id = ?", (task_id,))
        assert row.fetchone() == {"status": "PENDING"}  # the failed batch left nothing


def test_a_live_batch_revising_a_missing_definition_stops_naming_the_event(
    service: TaskService, read_db: Database, moves: list[bool]
) -> None:
    # A deferred batch has no rowcount: the definition's UPDATE is followed by a check
    # that fails the transaction; the batch then runs the long way, which names the event.
    record = DefinitionRecord.register(
        definition_id="not-registered", document=DOCUMENT, at=ENDED, actor=ANONYMOUS
    )
    record.revise(document={**DOCUMENT, "description": "b"}, at=ENDED, actor=ANONYMOUS)
    revised = record.collect_events()[-1]
    extra: list[tuple[int, Any]] = []  # after the real log: the revision

    def read_log(after: int, limit: int) -> list[tuple[int, Any]]:
        return (service.read_log(after, limit) + [e for e in extra if e[0] > after])[:limit]

    runner = ProjectionRunner(read_log, read_models(), read_db)
    runner.prepare()
    submit(service)
    runner.run_once()
    head = runner.position
    extra.append((head + 1, revised))
    with pytest.raises(ApplyError, match=f"notification {head + 1}.*not-registered") as raised:
        runner.run_once()
    assert isinstance(raised.value.cause, LookupError)
    assert moves == ([True] if read_db.postgres else [])  # checked at commit, then the long way
    with read_db.read() as cur:
        assert schema.read_position(cur, 1) == head
