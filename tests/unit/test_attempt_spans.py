"""The worker's spans (in-memory exporter): an attempt continues its work item's trace,
on the inline path as on the full one, a failure ends it in error, and its reports carry
its context; a handler's own spans and log lines belong to it. Off: no span, no context,
the log lines still name a work item's trace."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.tracing_support import in_memory
from tests.unit.test_inline_attempts import item, work, worker
from workers import tracing
from workers.attempt import Attempt
from workers.handlers import HandlerRegistry, inline
from workers.integration import IntegrationExecutor
from workers.logs import context as log_context
from workers.protocol import encoder

HERE = __name__
TRACE = {"traceparent": f"00-{0xABC:032x}-{0xDEF:016x}-01", "tracestate": "k=v"}
seen: list[Any] = []


@inline
def quick(payload: Any, context: Any) -> Any:
    return payload


def traced_handler(payload: Any, context: Any) -> Any:  # a thread: the span is current
    with trace.get_tracer("handler").start_as_current_span("handler's own"):
        seen.append(dict(log_context()))  # what its log lines would carry
    return {"ok": True}


def failing(payload: Any, context: Any) -> Any:
    raise RuntimeError("out of stock")


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    with in_memory() as (exporter, provider):
        trace.set_tracer_provider(provider)  # what configure() does in a worker; once
        yield exporter


def attempt_of(handler: str) -> Attempt:
    work_item = item("t-1", f"{HERE}:{handler}", trace=TRACE)
    return Attempt(work_item, "w-1", HandlerRegistry(), IntegrationExecutor())


async def test_an_attempt_continues_its_work_item_s_trace(
    exported: InMemorySpanExporter,
) -> None:
    attempt = attempt_of("traced_handler")
    result = await attempt.run()
    assert result is not None and result.kind == "completed"
    spans = {s.name: s for s in exported.get_finished_spans()}
    span = spans["taskexec.attempt"]
    assert span.context.trace_id == 0xABC and span.parent is not None
    assert span.parent.span_id == 0xDEF
    assert span.kind is trace.SpanKind.CONSUMER
    assert span.attributes == {
        "taskexec.task_id": "t-1",
        "taskexec.attempt": 1,
        "taskexec.definition": "d",
        "taskexec.worker": "w-1",
        "taskexec.outcome": "completed",
    }
    assert span.context.trace_state.get("k") == "v"
    own = spans["handler's own"]
    assert own.parent is not None and own.parent.span_id == span.context.span_id
    assert attempt.trace == {
        "traceparent": f"00-{0xABC:032x}-{span.context.span_id:016x}-01",
        "tracestate": "k=v",
    }
    [fields] = seen
    assert fields["trace_id"] == f"{0xABC:032x}" and fields["task_id"] == "t-1"


async def test_a_failed_attempt_ends_its_span_in_error(exported: InMemorySpanExporter) -> None:
    result = await attempt_of("failing").run()
    assert result is not None and result.kind == "failed"
    [span] = exported.get_finished_spans()
    assert span.status.status_code is trace.StatusCode.ERROR
    assert span.status.description == "RuntimeError: out of stock"
    assert span.attributes is not None and span.attributes["taskexec.outcome"] == "failed"


async def test_an_inline_attempt_is_traced_and_its_report_carries_the_span(
    exported: InMemorySpanExporter,
) -> None:
    w, reports, _ = worker()
    msg = work("a", f"{HERE}:quick")
    msg.data = encoder.encode(item("a", f"{HERE}:quick", trace=TRACE))
    await w._begin([msg])  # type: ignore[list-item]
    [(report, stored)] = reports.sent
    [span] = exported.get_finished_spans()
    assert span.context.trace_id == 0xABC
    assert report.trace is not None
    assert report.trace["traceparent"] == f"00-{0xABC:032x}-{span.context.span_id:016x}-01"
    stored.set_result(None)
    await asyncio.sleep(0.01)


async def test_off_there_is_no_span_and_no_context_but_logs_name_the_trace() -> None:
    assert not tracing.active()
    attempt = attempt_of("failing")
    assert attempt.log_fields["trace_id"] == f"{0xABC:032x}"
    result = await attempt.run()
    assert result is not None and result.kind == "failed"
    assert attempt.trace is None
    assert tracing.span("x") is tracing.span("y")  # the one shared null context
    tracing.record("x", "internal", TRACE, 0, 1)  # nothing, and no error
    assert tracing.current() is None


def test_trace_ids_are_read_from_valid_traceparents_only() -> None:
    assert tracing.trace_id(TRACE) == f"{0xABC:032x}"
    assert tracing.trace_id(None) is None
    assert tracing.trace_id({"traceparent": "00-xyz-abc-01"}) is None
    assert tracing.trace_id({"tracestate": "k=v"}) is None


async def test_under_a_parent_not_sampled_no_span_is_made_and_its_context_travels_on(
    exported: InMemorySpanExporter,
) -> None:
    unsampled = {"traceparent": f"00-{0xABC:032x}-{0xDEF:016x}-00", "tracestate": "k=v"}
    work_item = item("t-2", f"{HERE}:traced_handler", trace=unsampled)
    attempt = Attempt(work_item, "w-1", HandlerRegistry(), IntegrationExecutor())
    seen.clear()
    result = await attempt.run()
    assert result is not None and result.kind == "completed"
    # No attempt span: a parent-based sampler would record nothing under this parent.
    assert exported.get_finished_spans() == ()
    assert attempt.trace == unsampled  # the caller's context, passed on as it came
    assert seen[0]["trace_id"] == f"{0xABC:032x}"
    tracing.record("x", "internal", unsampled, 0, 1)
    with tracing.span("y", parent=unsampled) as parent:
        assert not parent.is_recording()
        assert tracing.current() == unsampled
    assert exported.get_finished_spans() == ()
    sampled_flags = {"traceparent": f"00-{0xABC:032x}-{0xDEF:016x}-03"}  # sampled + random
    tracing.record("z", "internal", sampled_flags, 0, 1)
    assert [s.name for s in exported.get_finished_spans()] == ["z"]
