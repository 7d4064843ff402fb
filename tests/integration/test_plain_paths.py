"""Every shortcut switched off (commands/fast_paths.py) on real stores: the plain paths
record and answer what the fast ones do. PostgreSQL's recorder both ways: the one-statement
insert and eventsourcing's own, with the same rows, tracking and refusals."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent, Tracking

from commands.catalog import DefinitionCatalog
from commands.event_store_sql import INSERT_FUNCTION
from commands.fast_paths import FastPaths
from commands.messages import CancelTask, RecordReport, SubmitTask
from commands.persistence import DatabaseConfig, prepare_database
from commands.pg_recorder import BinaryInsertProcessRecorder, SerialDdlProcessRecorder
from commands.service import TaskService
from domain.values import ANONYMOUS, TaskStatus
from tests.conftest import EXAMPLE_INPUT, EXAMPLE_OUTPUT

ALL_OFF = FastPaths(**dict.fromkeys(FastPaths.names(), False))


def orders(count: int) -> list[SubmitTask]:
    return [SubmitTask("calculate-order-total", EXAMPLE_INPUT, ANONYMOUS)] * count


def open_service(url: str, fast_paths: FastPaths, pool_size: int = 4) -> TaskService:
    config = DatabaseConfig.from_url(url)
    prepare_database(config)
    env = config.eventsourcing_env(pool_size=pool_size, fast_paths=fast_paths)
    return TaskService(env, DefinitionCatalog.load())


@pytest.fixture
def plain(database_url: str) -> Iterator[TaskService]:
    service = open_service(database_url, ALL_OFF)
    yield service
    service.close()


def report(task_id: Any, kind: str, **fields: Any) -> RecordReport:
    return RecordReport(task_id, 1, kind, "w-1", datetime.now(UTC), **fields)


def test_every_shortcut_off_a_task_s_life_and_its_log(plain: TaskService) -> None:
    assert plain.fast_paths == ALL_OFF
    assert plain.recent is None and not plain.task_cache.enabled
    start = plain.recorder.max_notification_id() or 0
    done, cancelled = (o for o in plain.submit_many(orders(2)) if not isinstance(o, Exception))
    assert plain.record_reports([report(done.task_id, "started")]) == 1
    assert plain.record_reports([report(done.task_id, "completed", output=EXAMPLE_OUTPUT)]) == 1
    assert plain.record_reports([report(done.task_id, "completed", output=EXAMPLE_OUTPUT)]) == 0
    plain.cancel(CancelTask(cancelled.task_id, ANONYMOUS))
    assert plain.load(done.task_id).status is TaskStatus.COMPLETED
    assert plain.load(cancelled.task_id).status is TaskStatus.CANCELLED
    log = plain.follow_log(start, 100)
    assert [p for p, _ in log] == [p for p, _ in plain.read_log(start, 100)]
    assert [type(e).__name__ for _, e in log] == [
        "Submitted", "Submitted", "Started", "Completed", "Cancelled"
    ]  # fmt: skip


# -- PostgreSQL's recorder, both ways --------------------------------------------------------


@pytest.fixture(params=[True, False], ids=["one-statement", "library"])
def pg_service(request: pytest.FixtureRequest, postgres_url: str) -> Iterator[TaskService]:
    service = open_service(postgres_url, FastPaths(pg_insert=bool(request.param)))
    yield service
    service.close()


def _insert_function_exists(postgres_url: str) -> bool:
    config = DatabaseConfig.from_url(postgres_url)
    with psycopg.connect(config.conninfo()) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE p.proname = %s AND n.nspname = %s",
            (INSERT_FUNCTION, config.schema),
        ).fetchone()
    return bool(row and row[0])


@pytest.mark.postgres
def test_postgres_the_recorder_follows_the_switch(
    pg_service: TaskService, postgres_url: str
) -> None:
    fast = pg_service.fast_paths.pg_insert
    assert isinstance(pg_service.recorder, SerialDdlProcessRecorder)
    assert isinstance(pg_service.recorder, BinaryInsertProcessRecorder) is fast
    assert _insert_function_exists(postgres_url) is fast
    outcomes = [o for o in pg_service.submit_many(orders(5)) if not isinstance(o, Exception)]
    positions = [o.position for o in outcomes]
    assert positions == sorted(positions) and len(set(positions)) == 5
    notifications = pg_service.recorder.select_notifications(positions[0], 10)
    assert [n.id for n in notifications] == positions
    assert [n.originator_id for n in notifications] == [o.task_id for o in outcomes]
    assert {n.topic for n in notifications} == {"taskexec.task.submitted.v1"}


def _stored(service: TaskService, count: int) -> list[StoredEvent]:
    tasks = [service._new_task(cmd, uuid4(), None) for cmd in orders(count)]  # not saved
    return [service.mapper.to_stored_event(e) for t in tasks for e in t.collect_events()]


@pytest.mark.postgres
def test_postgres_tracking_and_refusals_are_the_same_both_ways(pg_service: TaskService) -> None:
    recorder = pg_service.process_recorder
    first = _stored(pg_service, 2)
    ids = recorder.insert_events(first, tracking=Tracking("T", 5))
    assert ids is not None and len(ids) == 2 and recorder.max_tracking_id("T") == 5
    again = _stored(pg_service, 1)
    with pytest.raises(IntegrityError):  # position 5 again: redelivered
        recorder.insert_events(again, tracking=Tracking("T", 5))
    with pytest.raises(IntegrityError):  # a version taken: nothing of the batch recorded
        recorder.insert_events([first[0], *again], tracking=Tracking("T", 6))
    assert recorder.max_tracking_id("T") == 5
    assert recorder.select_events(again[0].originator_id) == []
    assert recorder.max_notification_id() == ids[-1]


@pytest.mark.postgres
@pytest.mark.parametrize("fast", [True, False], ids=["one-statement", "library"])
def test_postgres_replicas_starting_together_take_turns(postgres_url: str, fast: bool) -> None:
    services: list[TaskService] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            services.append(open_service(postgres_url, FastPaths(pg_insert=fast), pool_size=1))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        assert errors == [] and len(services) == 3
        for service in services:
            assert len(service.submit_many(orders(1))) == 1
    finally:
        for service in services:
            service.close()
