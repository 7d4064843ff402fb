"""Reading many aggregates at once and scanning the store (commands/event_reader.py), and
the PostgreSQL recorder's binary inserts, held to what the library itself reads and
writes (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent, Tracking

from commands.event_reader import CHUNK
from commands.messages import CancelTask, RecordReport, SubmitTask
from commands.pg_recorder import BinaryInsertProcessRecorder
from commands.service import TaskService
from domain.values import ANONYMOUS
from tests.conftest import EXAMPLE_INPUT
from tests.event_store_support import assert_scans_are_the_librarys
from tests.read_side_support import make_history


def orders(count: int) -> list[SubmitTask]:
    cmd = SubmitTask("calculate-order-total", EXAMPLE_INPUT, ANONYMOUS)
    return [cmd] * count


def test_many_at_once_equals_one_by_one(service: TaskService) -> None:
    outcomes = [o for o in service.submit_many(orders(12)) if not isinstance(o, Exception)]
    ids = [o.task_id for o in outcomes]
    now = datetime.now(UTC)
    service.record_reports([RecordReport(i, 1, "started", "w", now) for i in ids[:6]])
    service.cancel(CancelTask(ids[0], ANONYMOUS))
    absent = uuid4()

    found = service.event_reader.many([*ids, absent])
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
    found = service.event_reader.many([*missing, *ids])
    assert sorted(found) == sorted(ids)


def test_the_audit_scans_read_what_the_library_reads(service: TaskService) -> None:
    make_history(service, tasks=30)
    assert_scans_are_the_librarys(service)


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


def _pg_service(postgres_url: str) -> TaskService:
    from commands.catalog import DefinitionCatalog
    from commands.persistence import DatabaseConfig, prepare_database

    config = DatabaseConfig.from_url(postgres_url)
    prepare_database(config)
    return TaskService(config.eventsourcing_env(), DefinitionCatalog.load())


def _stored(service: TaskService, count: int) -> list[StoredEvent]:
    outcomes = [
        service._new_task(cmd, uuid4(), None)
        for cmd in orders(count)  # not saved
    ]
    return [service.mapper.to_stored_event(e) for t in outcomes for e in t.collect_events()]


def test_postgres_one_statement_insert_keeps_tracking_atomic(postgres_url: str) -> None:
    """The recorder's single-statement insert: a tracking position already recorded, or a
    version already taken, refuses the whole batch (IntegrityError) and records nothing."""
    service = _pg_service(postgres_url)
    recorder = service.process_recorder
    try:
        first = _stored(service, 2)
        ids = recorder.insert_events(first, tracking=Tracking("T", 5))
        assert ids is not None and len(ids) == 2 and ids == sorted(ids)
        assert recorder.max_tracking_id("T") == 5

        again = _stored(service, 1)
        with pytest.raises(IntegrityError):  # position 5 again: redelivered
            recorder.insert_events(again, tracking=Tracking("T", 5))
        with pytest.raises(IntegrityError):  # behind the recorded position
            recorder.insert_events(again, tracking=Tracking("T", 4))
        assert recorder.select_events(again[0].originator_id) == []

        with pytest.raises(IntegrityError):  # a version taken: tracking does not move
            recorder.insert_events([first[0], *again], tracking=Tracking("T", 6))
        assert recorder.max_tracking_id("T") == 5
        assert recorder.select_events(again[0].originator_id) == []

        assert recorder.insert_events([], tracking=Tracking("T", 7)) == []  # tracking alone
        assert recorder.max_tracking_id("T") == 7
        assert recorder.max_notification_id() == ids[-1]  # nothing else recorded
    finally:
        service.close()


def test_postgres_replicas_starting_together_create_the_insert_function(
    postgres_url: str,
) -> None:
    """Every process (re)creates the insert function at start; several at once take turns
    instead of failing on a concurrently replaced function."""
    services: list[TaskService] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            services.append(_pg_service(postgres_url))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        assert errors == []
        assert len(services) == 4
        for service in services:  # each can record through the function
            assert len(service.submit_many(orders(1))) == 1
        notifications = services[0].recorder.select_notifications(1, 100)
        assert len([n for n in notifications if n.topic == "taskexec.task.submitted.v1"]) == 4
    finally:
        for service in services:
            service.close()


def test_postgres_recorder_refuses_legacy_multi_row_tracking(postgres_url: str) -> None:
    from commands.catalog import DefinitionCatalog
    from commands.persistence import DatabaseConfig, prepare_database

    config = DatabaseConfig.from_url(postgres_url)
    prepare_database(config)
    env = {**config.eventsourcing_env(), "SINGLE_ROW_TRACKING": "f"}
    with pytest.raises(ValueError, match="single-row tracking"):
        TaskService(env, DefinitionCatalog.load())
