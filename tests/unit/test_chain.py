"""Unit tests of the hash chain (domain/chain.py) and of checking one
(projections/audit/chain_check.py):
pure logic, no I/O. Stored form = what the service's own Mapper writes and reads back."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import math
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import Mapper
from hypothesis import given, settings
from hypothesis import strategies as st

from commands.transcoder import PayloadSafeTranscoder
from domain.apikey import ApiKey
from domain.chain import (
    GENESIS,
    ChainedAggregate,
    canonical_encoding,
    canonical_time,
    event_fields,
    event_hash,
    hashed_document,
    json_form,
)
from domain.definition import TaskDefinition
from domain.definition_record import DefinitionRecord
from domain.errors import TaskNotCancellable
from domain.task import Task
from domain.values import Actor, TaskType
from projections.audit.chain_check import ChainLink, check_chain, hash_matches

T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
USER = Actor(id="alice", kind="jwt")
WORKER = Actor(id="w-1", kind="worker")
TASK_ID = UUID("7d3c1e7a-5b8e-4c1a-9f00-0123456789ab")
DEFINITION = TaskDefinition(
    id="calc",
    name="Calc",
    description="",
    type=TaskType.AUTOMATED,
    version="1.0.0",
    timeout_ms=60_000,
    execution_config={"handler": "workers.handlers.orders:calculate_order_total"},
)
ROOT = Path(__file__).parents[2]


def mapper() -> Mapper[UUID]:
    return Mapper(transcoder=PayloadSafeTranscoder())


def completed_task(output: Any = None) -> Task:
    task = Task.submit(
        task_id=TASK_ID, at=T0, actor=USER, definition=DEFINITION, input={"orderId": "A"}
    )
    task.start(attempt=1, worker="w-1", at=T0 + timedelta(seconds=1), actor=WORKER)
    task.complete(
        attempt=1,
        output=output if output is not None else {"total": 50.73},
        at=T0 + timedelta(seconds=2),
        actor=WORKER,
    )
    return task


def stored_links(events: list[Any]) -> list[ChainLink]:
    """Events through the service's mapper and back: the chain check's input."""
    m = mapper()
    links = []
    for event in events:
        stored = m.to_stored_event(event)
        state = PayloadSafeTranscoder().decode(stored.state)
        links.append(ChainLink(stored.originator_version, stored.topic, state))
    return links


# -- the algorithm, pinned ---------------------------------------------------------------

VECTOR = (
    "7d3c1e7a-5b8e-4c1a-9f00-0123456789ab",
    2,
    "taskexec.task.completed.v1",
    T0,
    GENESIS,
    {
        "actor": {"id": "w-1", "kind": "worker"},
        "attempt": 1,
        "output": {"total": 50.73, "note": "é", "big": 1e16},
    },
)


def test_the_canonical_encoding_and_hash_are_pinned():
    """Stored chains depend on these exact bytes: changing them breaks every store."""
    assert (
        canonical_encoding(*VECTOR)
        == (
            '["taskexec-chain-v1","7d3c1e7a-5b8e-4c1a-9f00-0123456789ab",2,'
            '"taskexec.task.completed.v1","2024-05-01T12:00:00.123456+00:00",'
            f'"{GENESIS}",'
            '{"actor":{"id":"w-1","kind":"worker"},"attempt":1,'
            '"output":{"big":1e+16,"note":"é","total":50.73}}]'
        ).encode()
    )
    assert event_hash(*VECTOR) == (
        "28b5e60657ca32959efbc3deed63aca4f08d289a18e93276898286939829f8df"
    )


def test_the_independent_stdlib_verifier_agrees_with_the_domain():
    """docs/examples/verify_export.py re-implements the encoding from its documentation."""
    spec = importlib.util.spec_from_file_location(
        "verify_export", ROOT / "docs" / "examples" / "verify_export.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    originator, version, topic, moment, prev, fields = VECTOR
    exported = {
        "aggregateId": originator,
        "version": version,
        "topic": topic,
        "timestamp": canonical_time(moment),
        "prevHash": prev,
        "fields": fields,
    }
    assert module.event_hash(exported) == event_hash(*VECTOR)


def test_canonical_time_is_utc_with_microseconds_whatever_the_zone():
    plus_two = T0.astimezone(timezone(timedelta(hours=2)))
    assert canonical_time(plus_two) == canonical_time(T0) == "2024-05-01T12:00:00.123456+00:00"
    assert canonical_time(T0.replace(microsecond=0)) == "2024-05-01T12:00:00.000000+00:00"
    assert canonical_time(T0.replace(tzinfo=None)) == canonical_time(T0)  # naive: UTC


# -- sealing new events ------------------------------------------------------------------


def test_every_new_event_is_sealed_and_linked_to_its_predecessor():
    events: list[Any] = list(completed_task().collect_events())
    assert [e.originator_version for e in events] == [1, 2, 3]
    assert events[0].prev_hash == GENESIS
    assert events[1].prev_hash == events[0].hash
    assert events[2].prev_hash == events[1].hash
    for event in events:
        state = vars(event)
        recomputed = event_hash(
            event.originator_id,
            event.originator_version,
            type(event).TOPIC,
            event.timestamp,
            event.prev_hash,
            json_form(event_fields(state)),
        )
        assert event.hash == recomputed
        assert len(event.hash) == 64 and int(event.hash, 16) >= 0


def test_a_loaded_aggregate_continues_its_chain():
    task = completed_task()
    events: list[Any] = list(task.collect_events())
    m = mapper()
    replayed: Any = None
    for event in events:
        decoded: Any = m.to_domain_event(m.to_stored_event(event))
        replayed = decoded.mutate(replayed)
    assert replayed.chain_head == events[-1].hash
    with pytest.raises(TaskNotCancellable):
        replayed.cancel(reason="late", force=False, at=T0, actor=USER)  # COMPLETED: refused
    # A task that can still change links its next event to the stored head.
    fresh = Task.submit(task_id=uuid4(), at=T0, actor=USER, definition=DEFINITION, input={})
    first: Any = fresh.collect_events()[0]
    stored_first: Any = m.to_domain_event(m.to_stored_event(first))
    loaded = stored_first.mutate(None)
    loaded.cancel(reason="r", force=False, at=T0, actor=USER)
    cancelled: Any = loaded.collect_events()[0]
    assert cancelled.prev_hash == first.hash


@pytest.mark.parametrize("aggregate_class", [Task, ApiKey, DefinitionRecord])
def test_every_event_class_of_every_aggregate_is_chained(aggregate_class: type[Any]):
    """New event classes (retries, timeouts, …) get the chain from the base class."""
    event_classes = [
        value
        for name, value in vars(aggregate_class).items()
        if isinstance(value, type) and issubclass(value, Aggregate.Event) and name != "Event"
    ]
    assert len(event_classes) >= 2
    for event_class in event_classes:
        assert issubclass(event_class, ChainedAggregate.Event), event_class
        assert {"prev_hash", "hash"} <= set(event_class.__dataclass_fields__)


def test_definition_and_apikey_events_are_chained_too():
    record = DefinitionRecord.register(
        definition_id="calc", document={"id": "calc", "v": 1}, at=T0, actor=USER
    )
    record.revise(document={"id": "calc", "v": 2}, at=T0, actor=USER)
    key = ApiKey.create(
        aggregate_id=uuid4(),
        key_id="0123456789abcdef",
        name="k",
        secret_hash="a" * 64,
        permissions=["tasks:read"],
        expires_at=None,
        at=T0,
        actor=USER,
    )
    key.revoke(at=T0, actor=USER)
    for aggregate in (record, key):
        events: list[Any] = list(aggregate.collect_events())
        assert events[0].prev_hash == GENESIS and events[1].prev_hash == events[0].hash
        faults = check_chain(aggregate.id, stored_links(events))
        assert faults == []


@pytest.mark.parametrize(
    "output",
    [
        {"pair": (1, 2)},  # a tuple is stored as a list
        {1: "one", 10: "ten", 9: "nine"},  # integer keys are stored as text
        {"nested": [{"b": 1.5, "a": None}], "unicode": "naïve ✓"},
    ],
)
def test_values_are_hashed_in_their_json_form_so_the_stored_event_verifies(output: Any):
    events: list[Any] = list(completed_task(output).collect_events())
    assert check_chain(TASK_ID, stored_links(events)) == []


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_an_event_json_cannot_hold_is_refused_when_created(bad: float):
    with pytest.raises(ValueError, match="JSON compliant"):
        completed_task({"value": bad})


@settings(max_examples=50, deadline=None)
@given(
    output=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
        lambda children: st.lists(children) | st.dictionaries(st.text(), children),
        max_leaves=10,
    )
)
def test_any_json_output_verifies_after_the_storage_round_trip(output: Any):
    if isinstance(output, float) and math.isinf(output):
        return  # refused at creation (see above)
    try:
        events: list[Any] = list(completed_task({"value": output}).collect_events())
    except ValueError:
        assert "inf" in repr(output)  # an infinity somewhere inside: refused, not stored
        return
    assert check_chain(TASK_ID, stored_links(events)) == []


# -- checking a chain (the links as stored) --------------------------------------------------


def links() -> list[ChainLink]:
    return stored_links(list(completed_task().collect_events()))


def test_an_intact_chain_has_no_fault():
    assert check_chain(TASK_ID, links()) == []


def test_an_altered_field_is_named_by_version():
    chain = links()
    assert chain[2].state is not None
    chain[2].state["output"] = {"total": 5073}
    (fault,) = check_chain(TASK_ID, chain)
    assert (fault.version, fault.kind) == (3, "altered")


@pytest.mark.parametrize(
    ("change", "version"),
    [
        (lambda s: s.update(timestamp=s["timestamp"] + timedelta(microseconds=1)), 2),
        (lambda s: s.update(actor={"id": "mallory", "kind": "jwt"}), 2),
        (lambda s: s.update(attempt=2), 2),
        (lambda s: s.update(extra="added"), 2),
        (lambda s: s.pop("worker"), 2),
    ],
)
def test_any_change_of_content_is_detected(change: Any, version: int):
    chain = links()
    state = chain[version - 1].state
    assert state is not None
    change(state)
    assert [(f.version, f.kind) for f in check_chain(TASK_ID, chain)] == [(version, "altered")]


def test_moving_an_event_to_another_aggregate_or_topic_is_detected():
    assert [f.kind for f in check_chain(uuid4(), links())] == ["altered"] * 3
    chain = links()
    chain[1].topic = Task.Completed.TOPIC
    assert [(f.version, f.kind) for f in check_chain(TASK_ID, chain)] == [(2, "altered")]


def test_a_rewritten_event_with_a_recomputed_hash_breaks_the_next_link():
    chain = links()
    state = chain[1].state
    assert state is not None
    state["worker"] = "somewhere-else"
    state["hash"] = event_hash(
        TASK_ID, 2, chain[1].topic, state["timestamp"], state["prev_hash"], event_fields(state)
    )
    faults = check_chain(TASK_ID, chain)
    assert [(f.version, f.kind) for f in faults] == [(3, "broken-link")]
    assert "version 2" in faults[0].message


def test_a_deleted_event_is_a_gap_naming_the_missing_version():
    chain = links()
    del chain[1]
    faults = check_chain(TASK_ID, chain)
    assert [(f.version, f.kind) for f in faults] == [(3, "gap")]
    assert "version 2 missing" in faults[0].message


def test_a_missing_first_event_is_a_gap_too():
    chain = links()[1:]
    assert [(f.version, f.kind) for f in check_chain(TASK_ID, chain)] == [(2, "gap")]
    more = links()[2:]
    (fault,) = check_chain(TASK_ID, more)
    assert "versions 1 to 2 missing" in fault.message


def test_a_first_event_that_does_not_start_from_genesis_is_detected():
    chain = links()
    state = chain[0].state
    assert state is not None
    state["prev_hash"] = "f" * 64
    state["hash"] = event_hash(
        TASK_ID, 1, chain[0].topic, state["timestamp"], state["prev_hash"], event_fields(state)
    )
    faults = check_chain(TASK_ID, chain)
    assert [(f.version, f.kind) for f in faults] == [(1, "broken-link"), (2, "broken-link")]


@pytest.mark.parametrize("field", ["hash", "prev_hash"])
def test_an_event_without_hash_fields_is_a_failure(field: str):
    chain = links()
    assert chain[0].state is not None
    del chain[0].state[field]
    faults = check_chain(TASK_ID, chain)
    assert [(f.version, f.kind) for f in faults] == [(1, "missing-hash")]


def test_an_undecodable_event_is_named():
    chain = links()
    chain[1] = ChainLink(2, chain[1].topic, None, "DecodeError('truncated')")
    faults = check_chain(TASK_ID, chain)
    assert [(f.version, f.kind) for f in faults] == [(2, "undecodable")]
    assert "truncated" in faults[0].message


def test_a_timestamp_that_is_not_a_time_is_an_alteration():
    chain = links()
    assert chain[0].state is not None
    chain[0].state["timestamp"] = "yesterday"
    assert [(f.version, f.kind) for f in check_chain(TASK_ID, chain)] == [(1, "altered")]


def test_the_fast_hash_path_falls_back_to_the_canonical_encoder():
    """msgspec writes 1e16 where Python writes 1e+16: the fallback decides."""
    document = hashed_document(*VECTOR)
    stored = hashlib.sha256(canonical_encoding(*VECTOR)).hexdigest()
    assert hash_matches(stored, document)
    plain = hashed_document(*VECTOR[:5], {"attempt": 1})
    assert hash_matches(
        hashlib.sha256(canonical_encoding(*VECTOR[:5], {"attempt": 1})).hexdigest(), plain
    )
    assert not hash_matches(stored, plain)
    assert not hash_matches(stored, [*document[:-1], {"x": math.nan}])  # not JSON: no match


def test_the_domain_imports_only_the_standard_library_and_eventsourcing_domain():
    """The chain lives in the domain: it must stay pure (no msgspec, no I/O libraries)."""
    import ast

    allowed = set(sys.stdlib_module_names) | {"eventsourcing.domain", "domain"}
    for path in sorted((ROOT / "domain").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                root = name.split(".")[0]
                assert name in allowed or root in allowed, f"{path.name} imports {name}"


_LEAVES = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5)
_VALUES = st.recursive(
    _LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=3) | st.integers(-3, 3), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(_VALUES)
def test_json_form_is_what_the_json_round_trip_gives(value: Any) -> None:
    """The shortcut for plain JSON values answers exactly what the round trip answers."""
    import json

    encoder = json.JSONEncoder(
        sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    try:
        expected = json.loads(encoder.encode(value))
    except (ValueError, TypeError) as exc:
        with pytest.raises(type(exc)):
            json_form(value)
        return
    assert json_form(value) == expected
    assert encoder.encode(json_form(value)) == encoder.encode(expected)


# -- the fast encoder (commands/canonical.py) ---------------------------------------------

_JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.floats(min_value=1e-5, max_value=1e-3)  # around the lower edge of tame
    | st.floats(min_value=1e15, max_value=1e17)  # and the upper
    | st.text()
    | st.text(st.characters(codec=None, categories=["Cs", "Cc", "Zl", "Zp", "Co"]))
)
_JSON = st.recursive(
    _JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def hashes(events: Sequence[Any]) -> list[str]:
    return [event.hash for event in events]


@contextlib.contextmanager
def fast_encoder(encode: Any) -> Iterator[None]:
    """``encode`` installed (None: the standard library alone) while the block runs."""
    from domain import chain

    installed = chain._fast_encode
    chain.use_fast_encoder(encode)
    try:
        yield
    finally:
        chain.use_fast_encoder(installed)


@settings(max_examples=400, deadline=None)
@given(_JSON)
def test_the_fast_encoder_writes_the_canonical_bytes_for_every_tame_document(value: Any):
    from commands import canonical
    from domain import chain

    document = hashed_document(TASK_ID, 3, "Task.Completed", T0, GENESIS, {"output": value})
    if chain._json_kind(document) != chain._TAME:
        return  # seal never hands it such a document
    try:
        fast = canonical.encode(document)
    except (TypeError, ValueError, OverflowError):
        return  # refused: seal falls back to the standard library
    assert fast == chain.encode(document)


@pytest.mark.parametrize("value", [0.0001, 9999999999999998.0, -0.0, 0.5, 2**65, "\u2028"])
def test_tame_values_encode_the_same(value: Any):
    from commands import canonical
    from domain import chain

    assert chain._json_kind([value]) == chain._TAME
    assert canonical.encode([value]) == chain.encode([value])


@pytest.mark.parametrize("value", [1e16, 9.9e-5, 1.5e300, -2.5e-7])
def test_floats_with_an_exponent_are_wild_because_msgspec_writes_them_otherwise(value: float):
    from commands import canonical
    from domain import chain

    assert chain._json_kind({"v": [value]}) == chain._WILD
    assert canonical.encode([value]) != chain.encode([value])


@settings(max_examples=100, deadline=None)
@given(_JSON)
def test_an_event_has_the_same_hash_with_or_without_the_fast_encoder(value: Any):
    from commands import canonical

    try:
        with fast_encoder(None):
            plain = hashes(completed_task({"value": value}).collect_events())
    except ValueError:
        return  # not storable (see above): refused either way
    with fast_encoder(canonical.encode):
        fast = hashes(completed_task({"value": value}).collect_events())
    assert fast == plain
