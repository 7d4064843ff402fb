"""Unit tests of the audit helpers: vocabulary, decoding, export lines, CLI parsing,
retention settings, verification shards. No I/O."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import Mapper

from api.cli.audit import UsageError, history_table, parse_time
from api.settings import Settings, parse_duration, parse_size
from commands.event_decoder import EventDecoder, StoredRecord
from commands.public_events import (
    PUBLIC_TYPES,
    aggregate_kind,
    camel,
    event_id,
    public_data,
    public_type,
    topic_parts,
)
from commands.transcoder import PayloadSafeTranscoder
from domain.chain import ChainedAggregate, canonical_time
from domain.definition import TaskDefinition
from domain.definition_record import DefinitionRecord
from domain.task import Task
from domain.values import Actor, TaskType
from projections.audit.history import export_line, history_entry
from projections.audit.verifier import shard_bounds
from workers.protocol import EVENTS_STREAM
from workers.streams import DUPLICATE_WINDOW_S, EventsRetention, stream_configs

T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
USER = Actor(id="alice", kind="jwt")
TASK_ID = UUID("7d3c1e7a-5b8e-4c1a-9f00-0123456789ab")
DEFINITION = TaskDefinition(
    id="calc",
    name="Calc",
    description="",
    type=TaskType.AUTOMATED,
    version="1.0.0",
    timeout_ms=60_000,
    execution_config={"handler": "x:y"},
)


class Gadget(ChainedAggregate):
    """An aggregate of a kind the vocabulary does not know (what a new one would look like)."""

    TOPIC = "taskexec.gadget.v1"

    class Event(ChainedAggregate.Event):
        actor: dict[str, str]

    class Created(Event, Aggregate.Created):
        TOPIC = "taskexec.gadget.created.v1"

    class Assembled(Event, Aggregate.Created):
        TOPIC = "taskexec.gadget.assembled.v1"
        part_count: int
        serial_number: str


def gadget_event() -> Any:
    gadget = Gadget._create(
        Gadget.Assembled,
        id=TASK_ID,
        timestamp=T0,
        actor=USER.as_dict(),
        part_count=3,
        serial_number="SN-1",
    )
    return gadget.collect_events()[0]


class FakeService:
    """What audit needs of a TaskService here: its mapper."""

    def __init__(self) -> None:
        self.mapper: Mapper[UUID] = Mapper(transcoder=PayloadSafeTranscoder())


def stored(event: Any, position: int) -> StoredRecord:
    s = FakeService().mapper.to_stored_event(event)
    return StoredRecord(
        position, UUID(str(s.originator_id)), s.originator_version, s.topic, s.state
    )


def task_events() -> list[Any]:
    task = Task.submit(
        task_id=TASK_ID, at=T0, actor=USER, definition=DEFINITION, input={"orderId": "A"}
    )
    task.cancel(reason="no longer needed", force=False, at=T0 + timedelta(seconds=1), actor=USER)
    return list(task.collect_events())


# -- vocabulary --------------------------------------------------------------------------


def test_public_types_and_data_come_from_the_outbox_mapping():
    submitted, cancelled = task_events()
    assert public_type(submitted) == "submitted"
    assert public_type(cancelled) == PUBLIC_TYPES[Task.Cancelled][0] == "cancelled"
    assert public_data(cancelled) == {"reason": "no longer needed", "force": False}
    assert public_data(submitted)["taskDefinitionId"] == "calc"


def test_an_event_without_a_public_mapping_is_named_after_its_topic_in_camel_case():
    event = gadget_event()
    assert public_type(event) == "assembled"
    assert aggregate_kind(event) == "gadget"
    assert public_data(event) == {"partCount": 3, "serialNumber": "SN-1"}  # no envelope fields


def test_topic_parts_and_camel_case():
    assert topic_parts("taskexec.task.retry-scheduled.v1") == ("task", "retry-scheduled")
    assert topic_parts("somewhere:Else") == ("unknown", "somewhere:Else")
    assert camel("error_message") == "errorMessage"
    assert camel("definition_id") == "definitionId"
    assert camel("x") == "x"


def test_aggregate_kinds():
    submitted, _ = task_events()
    record = DefinitionRecord.register(definition_id="d", document={}, at=T0, actor=USER)
    assert aggregate_kind(submitted) == "task"
    assert aggregate_kind(record.collect_events()[0]) == "definition"


def test_a_history_entry_has_the_public_view_and_the_chain():
    submitted, cancelled = task_events()
    entry = history_entry(cancelled, position=42)
    assert entry == {
        "id": event_id(TASK_ID, 2),
        "type": "cancelled",
        "version": 2,
        "position": 42,
        "time": "2024-05-01T12:00:01.123Z",
        "actor": {"id": "alice", "kind": "jwt"},
        "status": "CANCELLED",
        "data": {"reason": "no longer needed", "force": False},
        "prevHash": submitted.hash,
        "hash": cancelled.hash,
    }


# -- decoding and export lines -------------------------------------------------------------


def test_the_decoder_builds_the_events_the_library_mapper_builds():
    service: Any = FakeService()
    decoder = EventDecoder(service.mapper)
    for position, event in enumerate(task_events(), start=1):
        record = stored(event, position)
        state = decoder.state(record)
        library = service.mapper.to_domain_event(service.mapper.to_stored_event(event))
        mine = decoder.event(record, state)
        assert type(mine) is type(library)
        assert vars(mine) == vars(library)
        assert "originator_id" not in state  # the stored state is left as it was


def test_an_export_line_carries_what_the_hash_covers():
    service: Any = FakeService()
    decoder = EventDecoder(service.mapper)
    _, cancelled = task_events()
    record = stored(cancelled, 7)
    state = decoder.state(record)
    line = export_line(record, state, decoder.event(record, state))
    assert line["position"] == 7
    assert line["aggregateType"] == "task"
    assert line["aggregateId"] == str(TASK_ID)
    assert (line["type"], line["version"]) == ("cancelled", 2)
    assert line["topic"] == Task.Cancelled.TOPIC
    assert line["timestamp"] == canonical_time(cancelled.timestamp)
    assert line["fields"] == {
        "actor": {"id": "alice", "kind": "jwt"},
        "reason": "no longer needed",
        "force": False,
    }
    assert (line["prevHash"], line["hash"]) == (cancelled.prev_hash, cancelled.hash)


# -- the command line ----------------------------------------------------------------------


def test_history_table_shows_one_row_per_event_and_shortens_details():
    entries = [history_entry(e, p) for p, e in enumerate(task_events(), start=1)]
    table = history_table(entries, width=30).splitlines()
    assert table[0].split() == ["VERSION", "TIME", "TYPE", "STATUS", "ACTOR", "HASH", "DETAILS"]
    assert table[1].split()[:5] == [
        "1",
        "2024-05-01T12:00:00.123Z",
        "submitted",
        "PENDING",
        "jwt:alice",
    ]
    assert table[1].rstrip().endswith("…")
    assert table[2].split()[2:4] == ["cancelled", "CANCELLED"]
    assert entries[1]["hash"][:12] in table[2]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-31", datetime(2026, 1, 31, tzinfo=UTC)),
        ("2026-01-31T12:30:00Z", datetime(2026, 1, 31, 12, 30, tzinfo=UTC)),
        ("2026-01-31T12:30:00", datetime(2026, 1, 31, 12, 30, tzinfo=UTC)),
        ("2026-01-31T14:30:00+02:00", datetime(2026, 1, 31, 12, 30, tzinfo=UTC)),
    ],
)
def test_parse_time(text: str, expected: datetime):
    assert parse_time(text) == expected


@pytest.mark.parametrize("text", ["yesterday", "2026-13-01", "31/01/2026", ""])
def test_parse_time_refuses_what_is_not_iso_8601(text: str):
    with pytest.raises(UsageError):
        parse_time(text)


# -- retention settings --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("90s", 90),
        ("15m", 900),
        ("12h", 43200),
        ("30d", 2592000),
        ("2w", 1209600),
        ("1.5h", 5400),
        ("unlimited", 0),
        ("0", 0),
        (" 7D ", 604800),
    ],
)
def test_parse_duration(text: str, seconds: float):
    assert parse_duration("X", text) == seconds


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1048576", 1048576),
        ("500MB", 500_000_000),
        ("10gb", 10**10),
        ("1GiB", 2**30),
        ("unlimited", -1),
        ("-1", -1),
        ("64 KiB", 65536),
    ],
)
def test_parse_size(text: str, size: int):
    assert parse_size("X", text) == size


@pytest.mark.parametrize("text", ["forever", "-5m", "10 years", "1d2h"])
def test_a_bad_duration_names_the_variable(text: str):
    with pytest.raises(ValueError, match="TASKEXEC_EVENTS_MAX_AGE"):
        parse_duration("TASKEXEC_EVENTS_MAX_AGE", text)


@pytest.mark.parametrize("text", ["0", "lots", "1.5GB", "-2", "10 PB"])
def test_a_bad_size_names_the_variable(text: str):
    with pytest.raises(ValueError, match="TASKEXEC_EVENTS_MAX_BYTES"):
        parse_size("TASKEXEC_EVENTS_MAX_BYTES", text)


def test_retention_comes_from_the_environment_with_defaults():
    default = Settings.from_env({})
    assert (default.events_max_age_s, default.events_max_bytes) == (30 * 86400, -1)
    custom = Settings.from_env(
        {"TASKEXEC_EVENTS_MAX_AGE": "7d", "TASKEXEC_EVENTS_MAX_BYTES": "2GiB"}
    )
    assert (custom.events_max_age_s, custom.events_max_bytes) == (7 * 86400, 2 * 2**30)
    with pytest.raises(ValueError, match="TASKEXEC_EVENTS_MAX_BYTES"):
        Settings.from_env({"TASKEXEC_EVENTS_MAX_BYTES": "big"})


def test_the_events_stream_config_follows_the_retention():
    config = next(
        c for c in stream_configs(EventsRetention(3600, 10**9)) if c.name == EVENTS_STREAM
    )
    assert (config.max_age, config.max_bytes) == (3600, 10**9)
    assert config.duplicate_window == DUPLICATE_WINDOW_S
    # JetStream refuses a duplicate window longer than the max age: it shrinks with it.
    assert EventsRetention(max_age_s=60).duplicate_window_s == 60
    assert EventsRetention(max_age_s=0).duplicate_window_s == DUPLICATE_WINDOW_S


# -- verification shards -------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7])
def test_shards_cover_every_id_exactly_once(count: int):
    bounds = [shard_bounds(i, count) for i in range(count)]
    assert bounds[0][0] is None and bounds[-1][1] is None
    for (_, high), (low, _) in itertools.pairwise(bounds):
        assert high == low is not None
    probes = [UUID(int=0), UUID(int=2**127), UUID(int=2**128 - 1), TASK_ID]
    for probe in probes:
        owners = [
            i
            for i, (low, high) in enumerate(bounds)
            if (low is None or probe >= low) and (high is None or probe < high)
        ]
        assert len(owners) == 1
