"""Reading many aggregates at once, and the PostgreSQL recorder's binary inserts, held to
what the library itself reads and writes (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

from commands.event_loading import CHUNK, select_events_many
from commands.messages import CancelTask, RecordReport, SubmitTask
from commands.pg_recorder import BinaryInsertProcessRecorder
from commands.service import TaskService
from domain.values import ANONYMOUS
from tests.conftest import EXAMPLE_INPUT


def orders(count: int) -> list[SubmitTask]:
    cmd = SubmitTask("calculate-order-total", EXAMPLE_INPUT, ANONYMOUS)
    return [cmd] * count


def test_many_at_once_equals_one_by_one(service: TaskService) -> None:
    outcomes = [o for o in service.submit_many(orders(12)) if not isinstance(o, Exception)]
    ids = [o.task_id for o in outcomes]
    now = datetime.now(UTC)
    service.record_reports([RecordReport(i, 1, "started", "w", now) for i in ids[:6]], 1)
    service.cancel(CancelTask(ids[0], ANONYMOUS))
    absent = uuid4()

    found = select_events_many(service.recorder, [*ids, absent])
    assert absent not in found
    for task_id in ids:
        assert found[task_id] == list(service.recorder.select_events(task_id))
    loaded = service.load_many([*ids, absent])
    assert set(loaded) == set(ids)
    for task_id in ids:
        assert loaded[task_id].state() == service.load(task_id).state()
        assert loaded[task_id].chain_head == service.load(task_id).chain_head


def test_more_ids_than_one_statement_takes(service: TaskService) -> None:
    outcomes = service.submit_many(orders(300))
    ids = [o.task_id for o in outcomes if not isinstance(o, Exception)]
    missing = [uuid4() for _ in range(CHUNK)]
    found = select_events_many(service.recorder, [*missing, *ids])
    assert sorted(found) == sorted(ids)


def test_nothing_asked_nothing_read(service: TaskService) -> None:
    assert service.load_many([]) == {}


def test_postgres_inserts_go_through_the_binary_recorder(postgres_url: str) -> None:
    from commands.catalog import DefinitionCatalog
    from commands.persistence import DatabaseConfig, prepare_database

    config = DatabaseConfig.from_url(postgres_url)
    prepare_database(config)
    service = TaskService(config.eventsourcing_env(), DefinitionCatalog.load())
    try:
        assert isinstance(service.recorder, BinaryInsertProcessRecorder)
        outcomes = service.submit_many(orders(5))
        positions = [o.position for o in outcomes if not isinstance(o, Exception)]
        # Notification ids follow the order of the batch, as the library's insert gives.
        assert positions == sorted(positions)
        assert len(set(positions)) == 5
        notifications = service.recorder.select_notifications(positions[0], 10)
        assert [n.id for n in notifications][-5:] == positions
        for notification, outcome in zip(notifications[-5:], outcomes, strict=True):
            assert not isinstance(outcome, Exception)
            assert notification.originator_id == outcome.task_id
            assert notification.originator_version == 1
            assert notification.topic == "taskexec.task.submitted.v1"
            stored = service.recorder.select_events(outcome.task_id)
            assert stored[0].state == notification.state
    finally:
        service.close()
