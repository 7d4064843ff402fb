"""``TaskService.read_log`` (commands/log_reader.py) decodes every stored event exactly as
the library's ``select_notifications`` + ``Mapper.to_domain_event`` do: same positions,
classes, attributes (values, their types, their order), upcasting included; it falls back
to the library where it would not be the same; undecodable events name their position."""

from __future__ import annotations

import sqlite3
from typing import Any
from uuid import UUID

import psycopg
import pytest
from eventsourcing.domain import Aggregate

from commands.apikeys import ApiKeyService
from commands.catalog import DefinitionCatalog
from commands.log_reader import LogReader
from commands.persistence import DatabaseConfig, prepare_database
from commands.service import TaskService, UndecodableEvent
from domain.values import Actor
from tests.read_side_support import make_history


class Gadget(Aggregate):
    """An aggregate of another kind in the same store, to test upcasting with."""

    class Created(Aggregate.Created):
        name: str

    @staticmethod
    def create(name: str) -> Gadget:
        return Gadget._create(Gadget.Created, name=name)


def reader(service: TaskService) -> LogReader:
    service.read_log(0, 1)
    found: LogReader = service._log_reader
    return found


def same(fast: list[tuple[int, Any]], library: list[tuple[int, Any]]) -> None:
    assert [p for p, _ in fast] == [p for p, _ in library]
    for (_, a), (_, b) in zip(fast, library, strict=True):
        assert type(a) is type(b)
        assert a == b
        assert list(vars(a)) == list(vars(b))  # attribute order too
        assert [type(v) for v in vars(a).values()] == [type(v) for v in vars(b).values()]


def test_every_page_of_a_varied_log_is_the_librarys(service: TaskService) -> None:
    make_history(service, tasks=40)
    service.register_definitions(service.catalog.all())
    ApiKeyService(service).create(
        name="k", permissions=["tasks:read"], actor=Actor("a", "operator")
    )
    log = reader(service)
    assert log.fast
    head = service.recorder.max_notification_id() or 0
    for after, limit in [(0, 100_000), (0, 1), (3, 7), (head - 2, 10), (head, 10)]:
        same(log.read(after, limit), log.read_with_library(after, limit))
    everything = log.read(0, 100_000)
    assert len(everything) == head  # no gaps in this store
    position = 0
    while page := service.read_log(position, 13):  # the runner's way: page after page
        same(page, log.read_with_library(position, 13))
        position = page[-1][0]
    assert position == head


def test_old_events_are_upcast_as_the_library_does(
    service: TaskService, monkeypatch: pytest.MonkeyPatch
) -> None:
    service.save(Gadget.create("first"), Gadget.create("second"))

    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state["size"] = len(state["name"])

    monkeypatch.setattr(Gadget.Created, "class_version", 2, raising=False)
    monkeypatch.setattr(Gadget.Created, "upcast_v1_v2", staticmethod(upcast_v1_v2), raising=False)
    log = reader(service)
    fast = log.read(0, 100)
    same(fast, log.read_with_library(0, 100))
    assert [e.size for _, e in fast] == [5, 6]


def test_a_mapper_it_does_not_reproduce_uses_the_library(database_url: str) -> None:
    config = DatabaseConfig.from_url(database_url)
    prepare_database(config)
    env = {
        **config.eventsourcing_env(),
        "COMPRESSOR_TOPIC": "eventsourcing.compressor:ZlibCompressor",
    }
    service = TaskService(env, DefinitionCatalog.load())
    try:
        make_history(service, tasks=5)
        log = reader(service)
        assert not log.fast
        events = service.read_log(0, 1000)
        assert len(events) == service.recorder.max_notification_id()
        same(events, log.read_with_library(0, 1000))
    finally:
        service.close()


def corrupt(database_url: str, originator_id: UUID, version: int) -> None:
    config = DatabaseConfig.from_url(database_url)
    sql = "UPDATE {} SET state = ? WHERE originator_id = ? AND originator_version = ?"
    if config.is_postgres:
        with psycopg.connect(config.conninfo(), autocommit=True) as conn:
            conn.execute(
                sql.format("taskexec_events").replace("?", "%s"),
                (b"{not json", originator_id, version),
            )
        return
    assert config.sqlite_path is not None
    with sqlite3.connect(config.sqlite_path) as conn:
        conn.execute(sql.format("stored_events"), (b"{not json", originator_id.hex, version))


def test_an_undecodable_event_names_its_position(service: TaskService, database_url: str) -> None:
    ids = make_history(service, tasks=5)
    before = service.read_log(0, 1000)
    position = next(p for p, e in before if e.originator_id == ids[2] and e.originator_version == 1)
    log = reader(service)
    corrupt(database_url, ids[2], 1)
    for read in (log.read, log.read_with_library):
        with pytest.raises(UndecodableEvent, match=f"notification {position} ") as raised:
            read(0, 1000)
        assert raised.value.position == position
    assert service.read_log(position, 1000) == before[[p for p, _ in before].index(position) + 1 :]
