"""A failing handler's traceback kept with its task: bounded to 8 KB of UTF-8 (its end
kept), sent in the worker's failed report, recorded in ``Failed``/``RetryScheduled``
(old stored events without it still decode), published, and shown by the read model."""

from __future__ import annotations

import asyncio
import logging
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import msgspec
import pytest
from eventsourcing.persistence import Mapper, StoredEvent

from api.http.tasks import task_error
from commands.public_events import event_data
from commands.transcoder import PayloadSafeTranscoder
from domain.definition import TaskDefinition
from domain.task import Task
from domain.tracebacks import TRACEBACK_LIMIT, bounded_traceback
from domain.values import Actor
from projections import task_rows
from workers.attempt import Attempt, Result, failure
from workers.bridge.results import to_record
from workers.handlers import HandlerRegistry
from workers.integration import IntegrationError, IntegrationExecutor
from workers.isolation import HandlerFailed
from workers.protocol import Report, WorkItem, decode_reports, encoder
from workers.reports import encoded_report

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
WORKER = Actor(id="w-1", kind="worker")
TASK_ID = UUID("00000000-0000-4000-8000-000000000022")
MARKER = "…(truncated "


# -- the bound ------------------------------------------------------------------------------


def test_a_short_traceback_is_kept_whole() -> None:
    text = "Traceback (most recent call last):\n  ...\nValueError: no\n"
    assert bounded_traceback(text) == text
    assert bounded_traceback(None) is None
    exactly = "x" * TRACEBACK_LIMIT
    assert bounded_traceback(exactly) == exactly


def test_a_long_traceback_keeps_its_end_after_a_marker() -> None:
    text = "".join(f"frame {n}\n" for n in range(5000)) + "ValueError: the last line\n"
    kept = bounded_traceback(text)
    assert kept is not None
    assert len(kept.encode()) <= TRACEBACK_LIMIT
    assert len(kept.encode()) >= TRACEBACK_LIMIT - 3
    assert kept.startswith(MARKER)
    head, body = kept.split("\n", 1)
    left_out = int(head.removeprefix(MARKER).removesuffix(" bytes)"))
    assert text.endswith(body)
    assert left_out == len(text.encode()) - len(body.encode())
    assert kept.endswith("ValueError: the last line\n")


@pytest.mark.parametrize("char", ["é", "€", "𝄞"])  # 2, 3 and 4 bytes of UTF-8
@pytest.mark.parametrize("extra", [0, 1, 2, 3])
def test_multibyte_characters_are_never_split(char: str, extra: int) -> None:
    text = "a" * extra + char * 5000
    kept = bounded_traceback(text)
    assert kept is not None and kept.startswith(MARKER)
    data = kept.encode()  # a split character would not have decoded at all
    assert len(data) <= TRACEBACK_LIMIT
    body = kept.split("\n", 1)[1]
    assert set(body) == {char} and text.endswith(body)


def test_a_lone_surrogate_is_escaped_not_refused() -> None:
    kept = bounded_traceback("bad name \udc80\n")
    assert kept == "bad name \\udc80\n"
    assert msgspec.json.decode(encoder.encode(kept)) == kept


# -- the worker -----------------------------------------------------------------------------


class Declined(Exception):
    pass


def _inner_charge(amount: int) -> None:
    raise Declined(f"card declined for {amount}")


def _outer_checkout() -> None:
    _inner_charge(42)


def test_a_raising_handler_reports_its_traceback() -> None:
    try:
        _outer_checkout()
    except Declined as exc:
        result = failure(exc)
    assert (result.error_type, result.error_message) == ("Declined", "card declined for 42")
    assert result.traceback is not None
    assert "_outer_checkout" in result.traceback and "_inner_charge" in result.traceback
    assert result.traceback.rstrip().endswith("Declined: card declined for 42")


def test_a_huge_traceback_is_bounded_by_the_worker() -> None:
    try:
        raise ValueError("x" * 50_000)
    except ValueError as exc:
        result = failure(exc)
    assert result.traceback is not None and result.traceback.startswith(MARKER)
    assert len(result.traceback.encode()) <= TRACEBACK_LIMIT


def test_an_integration_failure_has_no_traceback() -> None:
    result = failure(IntegrationError("unavailable", retryable=True, error_type="HTTP_503"))
    assert result.error_type == "HTTP_503" and result.traceback is None


def test_a_process_isolated_handler_sends_its_traceback_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "child_handlers.py").write_text(
        textwrap.dedent(
            """
            class Broken(Exception):
                pass

            def deep_in_the_child():
                raise Broken("the child broke")

            def handler(payload, context):
                deep_in_the_child()
            """
        )
    )
    monkeypatch.syspath_prepend(str(code))
    item = WorkItem(
        task_id="t",
        attempt=1,
        task_type="AUTOMATED",
        definition_id="d",
        input={},
        timeout_ms=30_000,
        priority="MEDIUM",
        handler="child_handlers:handler",
        isolation="process",
    )
    attempt = Attempt(item, "w", HandlerRegistry(), IntegrationExecutor())
    with caplog.at_level(logging.WARNING, logger="workers.attempt"):
        result = asyncio.run(attempt.run())
    assert result is not None
    assert (result.error_type, result.error_message) == ("Broken", "the child broke")
    assert result.traceback is not None and "deep_in_the_child" in result.traceback
    assert result.traceback.rstrip().endswith("Broken: the child broke")
    # The worker's log line shows the child's traceback, not the parent's.
    [record] = [r for r in caplog.records if r.name == "workers.attempt"]
    assert record.exc_text is not None and "deep_in_the_child" in record.exc_text
    assert "in handler" in caplog.text


def test_a_child_that_died_without_a_word_has_no_traceback() -> None:
    result = failure(HandlerFailed("WorkerProcessDied", "exit code -9"))
    assert result.error_type == "WorkerProcessDied" and result.traceback is None


def test_the_report_carries_it_and_decodes_without_it() -> None:
    result = Result("failed", error_type="E", error_message="m", traceback="Traceback …\nE: m\n")
    report, body = encoded_report("w", str(TASK_ID), 1, result, at="2024-05-01T12:00:00Z")
    assert report.traceback == result.traceback
    assert to_record(decode_reports(body)[0]).traceback == result.traceback
    # An older worker's report has no such field: None.
    old = msgspec.json.encode(
        {"taskId": str(TASK_ID), "attempt": 1, "kind": "failed", "worker": "w", "at": "x"}
    )
    assert decode_reports(old)[0].traceback is None
    # An older service's Report (no such field) ignores it: unknown fields are not refused.
    assert not Report.__struct_config__.forbid_unknown_fields

    class OldReport(msgspec.Struct, rename="camel"):
        task_id: str
        attempt: int
        kind: str

    assert msgspec.json.decode(body, type=OldReport).kind == "failed"


# -- the aggregate, its events, the read model ----------------------------------------------


def _running(retries: int) -> Task:
    definition = TaskDefinition.from_document(
        {
            "id": "calc",
            "name": "Calc",
            "type": "AUTOMATED",
            "version": "1",
            "retryPolicy": {"maxRetries": retries, "retryInterval": 1000},
            "executionConfig": {"handler": "m:f"},
        }
    )
    task = Task.submit(task_id=TASK_ID, at=T0, actor=WORKER, definition=definition, input={})
    task.start(attempt=1, worker="w-1", at=T0 + timedelta(seconds=1), actor=WORKER)
    return task


@pytest.mark.parametrize(("retries", "kind"), [(0, Task.Failed), (1, Task.RetryScheduled)])
def test_failed_and_retry_scheduled_carry_the_traceback(retries: int, kind: type[Any]) -> None:
    task = _running(retries)
    at = T0 + timedelta(seconds=2)
    task.fail(attempt=1, error_type="E", error_message="m", at=at, actor=WORKER, traceback="tb\n")
    event = task.pending_events[-1]
    assert isinstance(event, kind) and event.traceback == "tb\n"
    assert task.error == {"type": "E", "message": "m", "traceback": "tb\n"}
    assert event_data(event)["traceback"] == "tb\n"
    mapper: Mapper[UUID] = Mapper(transcoder=PayloadSafeTranscoder())
    decoded: Any = mapper.to_domain_event(mapper.to_stored_event(event))
    assert decoded == event


def test_the_aggregate_bounds_what_a_worker_sent() -> None:
    task = _running(0)
    at = T0 + timedelta(seconds=2)
    task.fail(
        attempt=1, error_type="E", error_message="m", at=at, actor=WORKER, traceback="y" * 9000
    )
    event: Any = task.pending_events[-1]
    assert event.traceback.startswith(MARKER) and len(event.traceback.encode()) <= TRACEBACK_LIMIT


def test_without_a_traceback_nothing_changes() -> None:
    task = _running(0)
    task.fail(
        attempt=1, error_type="E", error_message="m", at=T0 + timedelta(seconds=2), actor=WORKER
    )
    event: Any = task.pending_events[-1]
    assert event.traceback is None and task.error == {"type": "E", "message": "m"}
    assert "traceback" not in event_data(event)
    assert task_error(task.error).details is None


@pytest.mark.parametrize("retries", [0, 1])
def test_an_event_stored_before_the_field_decodes(retries: int) -> None:
    """A stored event written before ``traceback`` existed (its state without the key):
    decoded with the class default, None."""
    task = _running(retries)
    task.fail(
        attempt=1, error_type="E", error_message="m", at=T0 + timedelta(seconds=2), actor=WORKER
    )
    transcoder = PayloadSafeTranscoder()
    mapper: Mapper[UUID] = Mapper(transcoder=transcoder)
    new = mapper.to_stored_event(task.pending_events[-1])
    state = msgspec.json.decode(new.state)
    del state["traceback"]
    old = StoredEvent(
        new.originator_id, new.originator_version, new.topic, msgspec.json.encode(state)
    )
    event: Any = mapper.to_domain_event(old)
    assert isinstance(event, (Task.Failed, Task.RetryScheduled)) and event.traceback is None
    assert "traceback" not in event.__dict__ and "traceback" not in event_data(event)
    replayed: Any = None
    for each in [*task.pending_events[:-1], event]:
        replayed = each.mutate(replayed)
    assert replayed.error == {"type": "E", "message": "m"}


def test_the_read_model_keeps_it_nul_and_all() -> None:
    task = _running(0)
    trace = "Traceback\n  bad \x00 byte\nE: m\n"
    at = T0 + timedelta(seconds=2)
    task.fail(attempt=1, error_type="E", error_message="m", at=at, actor=WORKER, traceback=trace)
    event = task.pending_events[-1]
    row: list[Any] = [None] * len(task_rows.COLUMNS)
    task_rows.CHANGES[type(event)](row, event)
    assert "\x00" not in row[task_rows.ERROR]  # an escape in the JSON text
    error = msgspec.json.decode(row[task_rows.ERROR])
    assert error == task.error
    shown = task_error(error)
    assert shown.details == {"traceback": trace} and shown.type == "E"
