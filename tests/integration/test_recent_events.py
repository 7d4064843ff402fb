"""The log read from memory (commands/recent.py) against the store it stands in for, on
SQLite and PostgreSQL: the same events, type for type, and the store read whenever the
window cannot answer exactly (another process's events, a burned id, a reader behind).
Switched off (TASKEXEC_FAST_RECENT_EVENTS=off), the log is read from the store alone."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import EventStore, IntegrityError

from commands.apikeys import ApiKeyService
from commands.catalog import DefinitionCatalog
from commands.fast_paths import FastPaths
from commands.messages import CancelTask, FinishManually, RecordReport, SubmitTask
from commands.persistence import DatabaseConfig, prepare_database
from commands.recent import RecentEvents
from commands.service import TaskService
from domain.values import Actor, Priority, RetryOverrides
from tests.conftest import EXAMPLE_INPUT, EXAMPLE_OUTPUT

USER = Actor("alice", "jwt")


def open_service(database_url: str, fast_paths: FastPaths | None = None) -> TaskService:
    config = DatabaseConfig.from_url(database_url)
    prepare_database(config)
    env = config.eventsourcing_env(fast_paths=fast_paths)
    service = TaskService(env, DefinitionCatalog.load())
    service.catalog.set_revisions(service.register_definitions(service.catalog.all()))
    return service


@pytest.fixture
def services(database_url: str) -> Iterator[tuple[TaskService, TaskService]]:
    """Two services on one store: two processes, as far as the window is concerned."""
    first, second = open_service(database_url), open_service(database_url)
    yield first, second
    first.close()
    second.close()


def report(task_id: UUID, attempt: int, kind: str, **fields: Any) -> RecordReport:
    return RecordReport(task_id, attempt, kind, "w-1", datetime.now(UTC), **fields)


def submit(service: TaskService, definition: str = "calculate-order-total", **kw: Any) -> UUID:
    payload = kw.pop("input", EXAMPLE_INPUT)
    command = SubmitTask(definition_id=definition, input=payload, actor=USER, **kw)
    return service.submit(command).task_id


def every_kind_of_event(service: TaskService) -> None:
    """Each event type the store holds, with optional fields set and unset."""
    done = submit(
        service,
        workflow_instance_id="wf-1",
        priority=Priority.HIGH,
        timeout_ms=5000,
        retry_policy=RetryOverrides(2, 10, 1.5),
        idempotency_key="key-1",
    )
    service.record_reports([report(done, 1, "started")])
    service.record_reports([report(done, 1, "failed", error_type="Boom", error_message="x")])
    service.record_reports(
        [report(done, 2, "completed", output=EXAMPLE_OUTPUT, started_at=datetime.now(UTC))],
    )
    timed_out = submit(service, retry_policy=RetryOverrides(0, 0, 1.0))
    service.record_reports([report(timed_out, 1, "started")])
    service.record_reports([report(timed_out, 1, "failed", error_type="TIMEOUT")])
    bad_output = submit(service)
    service.record_reports([report(bad_output, 1, "started")])
    service.record_reports([report(bad_output, 1, "completed", output={"total": "x"})])
    cancelled = submit(service)
    service.cancel(CancelTask(cancelled, USER, reason="no", force=True))
    manual = submit(
        service, "approve-refund", input={"orderId": "ORD-1", "amount": 5.0, "reason": "r"}
    )
    service.finish_manually(FinishManually(manual, USER, output={"approved": True}))
    keys = ApiKeyService(service)
    _, record = keys.create(
        name="ci",
        permissions=["tasks:read"],
        actor=USER,
        expires_at=datetime.now(UTC) + timedelta(days=1),
    )
    keys.revoke(record.key_id, USER)


def plain(value: Any) -> Any:
    """A value with the type of every part spelled out, to compare type for type."""
    if isinstance(value, dict):
        return ("dict", sorted((k, plain(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return (type(value).__name__, [plain(v) for v in value])
    return (type(value).__qualname__, repr(value))


def test_memory_holds_the_same_events_as_the_store_type_for_type(
    services: tuple[TaskService, TaskService],
) -> None:
    service = services[0]
    every_kind_of_event(service)
    head = service.recorder.max_notification_id() or 0
    stored = service._log_reader.read(0, 10_000)
    assert service.recent is not None
    remembered = service.recent.after(0, 10_000)
    assert remembered is not None
    assert [position for position, _ in remembered] == [position for position, _ in stored]
    assert stored[-1][0] == head
    assert {type(event).__name__ for _, event in stored} >= {
        "Submitted", "Started", "RetryScheduled", "Completed", "Failed", "TimedOut",
        "Cancelled", "Registered", "Created", "Revoked",
    }  # fmt: skip
    for (_, decoded), (_, kept) in zip(stored, remembered, strict=True):
        assert type(kept) is type(decoded)
        assert plain(vars(kept)) == plain(vars(decoded)), type(decoded).__name__


def test_another_process_s_events_come_from_the_store_in_order(
    services: tuple[TaskService, TaskService],
) -> None:
    ours, theirs = services
    start = ours.recorder.max_notification_id() or 0
    a = submit(ours)
    b = submit(theirs)  # in the window of the other service only
    c = submit(ours)
    read: list[tuple[int, Any]] = []
    position = start
    while events := ours.follow_log(position, 100):
        read += events
        position = events[-1][0]
    assert [event.originator_id for _, event in read] == [a, b, c]
    exact = ours.read_log(start, 100)  # the store's page, whole, whoever wrote it
    assert [p for p, _ in read] == [p for p, _ in exact]
    assert [event.originator_id for _, event in exact] == [a, b, c]
    assert ours.recent is not None
    assert ours.recent.hits >= 1 and ours.recent.misses >= 1  # both ways were taken


def test_an_id_burned_by_a_failed_transaction_is_read_past(
    services: tuple[TaskService, TaskService],
) -> None:
    service = services[0]
    first = submit(service)
    task = service.load(first)
    service.cancel(CancelTask(first, USER))
    task.cancel(reason=None, force=False, at=datetime.now(UTC) + timedelta(seconds=1), actor=USER)
    with pytest.raises(IntegrityError):  # a stale copy: its version is taken
        service.events.put(task.collect_events())
    after_failure = service.recorder.max_notification_id() or 0
    second = submit(service)
    events = service.follow_log(after_failure, 100)
    assert [event.originator_id for _, event in events] == [second]
    assert service.follow_log(events[-1][0], 100) == []


def test_a_reader_behind_the_window_reads_the_store(database_url: str) -> None:
    service = open_service(database_url)
    try:
        service.recent = RecentEvents(capacity=2)
        service.events.recent = service.recent  # type: ignore[attr-defined]
        start = service.recorder.max_notification_id() or 0
        ids = [submit(service) for _ in range(4)]
        assert service.recent.after(start, 10) is None  # the first two were dropped
        events = service.follow_log(start, 10)
        assert [event.originator_id for _, event in events] == ids
    finally:
        service.close()


def test_the_window_holds_only_what_its_readers_have_not_read(database_url: str) -> None:
    """Events a named reader has read leave memory at the next commit; a reader that
    asks again for them reads them from the store, the same events."""
    service = open_service(database_url)
    try:
        assert service.recent is not None
        start = service.recorder.max_notification_id() or 0
        first = [submit(service) for _ in range(3)]
        read = service.follow_log(start, 100, reader="relay")
        assert [event.originator_id for _, event in read] == first
        submit(service)
        service.follow_log(read[-1][0], 100, reader="relay")  # where it is now
        later = submit(service)
        assert len(service.recent) == 2  # the two after the relay's position
        again = service.follow_log(start, 100, reader="relay")  # from the store
        assert [event.originator_id for _, event in again][:3] == first
        assert again[-1][1].originator_id == later
    finally:
        service.close()


def test_switched_off_the_log_comes_from_the_store_alone(database_url: str) -> None:
    plain = open_service(database_url, FastPaths(recent_events=False))
    other = open_service(database_url)
    try:
        assert plain.recent is None
        assert type(plain.events) is EventStore  # the library's own
        start = plain.recorder.max_notification_id() or 0
        every_kind_of_event(plain)
        ids = [submit(plain), submit(other), submit(plain)]
        read: list[tuple[int, Any]] = []
        position = start
        while events := plain.follow_log(position, 7):
            read += events
            position = events[-1][0]
        exact = plain.read_log(start, 10_000)
        assert [p for p, _ in read] == [p for p, _ in exact]
        assert [plain_types(e) for _, e in read] == [plain_types(e) for _, e in exact]
        assert [event.originator_id for _, event in read][-3:] == ids
    finally:
        plain.close()
        other.close()


def plain_types(event: Any) -> Any:
    return (type(event).__name__, plain(vars(event)))
