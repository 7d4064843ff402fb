"""The in-memory event store (commands/memory.py, ``DatabaseConfig.memory()``) and the
plain paths that read it through the library's public recorder API: many aggregates'
events and the audit scans (commands/event_reader.py), and the notification log
(commands/log_reader.py)."""

from __future__ import annotations

import gc
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from eventsourcing.persistence import StoredEvent
from eventsourcing.popo import POPOProcessRecorder

from commands.catalog import DefinitionCatalog
from commands.event_reader import CHUNK, EventReader
from commands.fast_paths import FastPaths
from commands.messages import CancelTask, RecordReport
from commands.persistence import DatabaseConfig
from commands.service import TaskService, UndecodableEvent
from domain.values import ANONYMOUS
from tests.contract.support import order
from tests.event_store_support import assert_scans_are_the_librarys
from tests.read_side_support import make_history


def open_service(config: DatabaseConfig, fast_paths: FastPaths | None = None) -> TaskService:
    return TaskService(config.eventsourcing_env(fast_paths=fast_paths), DefinitionCatalog.load())


def test_services_built_from_one_config_share_its_store_and_no_other() -> None:
    config = DatabaseConfig.memory()
    first, second = open_service(config), open_service(config)
    elsewhere = open_service(DatabaseConfig.memory())
    named = open_service(DatabaseConfig.memory(config.dbname))
    assert isinstance(first.recorder, POPOProcessRecorder)
    assert first.recorder is second.recorder is named.recorder
    assert elsewhere.recorder is not first.recorder

    task = first.submit(order())
    assert second.load(task.task_id).status.value == "PENDING"
    assert elsewhere.recorder.max_notification_id() is None


def test_a_store_lives_as_long_as_a_service_uses_it() -> None:
    config = DatabaseConfig.memory()
    service = open_service(config)
    service.submit(order())
    service.close()
    del service
    gc.collect()
    assert open_service(config).recorder.max_notification_id() is None


def test_the_switches_reach_a_service_in_memory() -> None:
    service = open_service(DatabaseConfig.memory(), fast_paths=FastPaths(task_cache=False))
    assert not service.task_cache.enabled


def test_many_at_once_equals_one_by_one() -> None:
    service = open_service(DatabaseConfig.memory())
    ids = [o.task_id for o in service.submit_many([order()] * 12) if not isinstance(o, Exception)]
    now = datetime.now(UTC)
    service.record_reports([RecordReport(i, 1, "started", "w", now) for i in ids[:6]])
    service.cancel(CancelTask(ids[0], ANONYMOUS))
    absent = [uuid4() for _ in range(CHUNK)]  # more ids than one statement takes

    found = service.event_reader.many([*absent, *ids])
    assert sorted(found) == sorted(ids)
    for task_id in ids:
        assert found[task_id] == list(service.recorder.select_events(task_id))
    service.task_cache.forget(ids)
    loaded = service.load_many([*ids, absent[0]])
    assert set(loaded) == set(ids)
    for task_id in ids:
        assert loaded[task_id].state() == service.load(task_id).state()


def test_a_recorder_without_a_public_read_is_refused() -> None:
    with pytest.raises(TypeError, match="cannot batch-read events from object"):
        EventReader(object()).many([uuid4()])


def test_the_log_is_read_as_the_library_reads_it() -> None:
    service = open_service(DatabaseConfig.memory())
    make_history(service, tasks=20)
    reader = service._log_reader
    assert not reader.fast  # no SQL here: the library's public path
    head = service.recorder.max_notification_id() or 0
    everything = service.read_log(0, 100_000)
    assert [p for p, _ in everything] == list(range(1, head + 1))
    assert everything == reader.read_with_library(0, 100_000)
    assert service.read_log(3, 7) == everything[3:10]
    assert service.read_log(head, 10) == []


def test_the_audit_scans_read_the_store_through_the_public_api() -> None:
    service = open_service(DatabaseConfig.memory())
    make_history(service, tasks=30)
    assert service.event_reader.tables is None
    assert_scans_are_the_librarys(service)


def test_an_undecodable_event_names_its_position() -> None:
    service = open_service(DatabaseConfig.memory())
    task_id = service.submit(order()).task_id
    bad = StoredEvent(uuid4(), 1, "taskexec.task.submitted.v1", b"{not json")
    service.recorder.insert_events([bad])
    with pytest.raises(UndecodableEvent, match="notification 2 ") as raised:
        service.read_log(0, 10)
    assert raised.value.position == 2
    assert service.read_log(0, 1)[0][1].originator_id == task_id
