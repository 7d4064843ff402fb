"""Traces inside ``serve``, with the SDK's in-memory exporter, on SQLite and PostgreSQL:
what is stored with a task, the commit spans of commands committed together, the outbox's
messages; and, with tracing off, that nothing is traced or stored."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from uuid import UUID

import msgspec
import pytest
from litestar.testing import TestClient
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from api.http.tracing import TracedRequests
from api.runtime import Runtime
from domain.task import Task
from tests.conftest import EXAMPLE_INPUT
from tests.security_support import serving
from tests.tracing_support import in_memory
from workers import tracing
from workers.bridge.outbox import Outbox
from workers.protocol import work_decoder

TASKS = "/api/v1/tasks"
BODY = {"taskDefinitionId": "calculate-order-total", "input": EXAMPLE_INPUT}


def traceparent(n: int) -> str:
    return f"00-{n:032x}-{n:016x}-01"


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    with in_memory() as (exporter, _):
        yield exporter


@pytest.fixture
def served(database_url: str, tmp_path: Path) -> Iterator[tuple[TestClient[Any], Runtime]]:
    with serving(database_url, tmp_path) as (client, runtime):
        yield client, runtime


def submitted(runtime: Runtime, task_id: str) -> Task.Submitted:
    [event] = [
        e
        for _, e in runtime.service.read_log(0, 10_000)
        if e.originator_id == UUID(task_id) and isinstance(e, Task.Submitted)
    ]
    return event


def named(spans: tuple[ReadableSpan, ...], name: str, trace: int) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name and s.context.trace_id == trace]


def test_with_tracing_off_nothing_is_traced_or_stored(
    served: tuple[TestClient[Any], Runtime],
) -> None:
    client, runtime = served
    layer: Any = client.app.asgi_handler
    while layer is not None:  # no layer of the stack is the tracing one
        assert not isinstance(layer, TracedRequests)
        layer = getattr(layer, "_app", None)
    created = client.post(TASKS, json=BODY, headers={"traceparent": traceparent(7)})
    assert created.status_code == 201
    assert submitted(runtime, created.json()["id"]).trace is None
    assert tracing.current() is None and not tracing.active()


def test_commands_committed_together_each_get_a_commit_span_under_their_request(
    exported: InMemorySpanExporter, served: tuple[TestClient[Any], Runtime]
) -> None:
    client, runtime = served

    def submit(n: int) -> str:
        headers = {"traceparent": traceparent(n), "tracestate": f"k={n}"}
        response = client.post(TASKS, json=BODY, headers=headers)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(submit, range(1, 41)))
    spans = tuple(exported.get_finished_spans())
    for n, task_id in enumerate(ids, start=1):
        [request] = named(spans, "POST /api/v1/tasks", n)
        assert request.parent is not None and request.parent.span_id == n  # the caller's
        [commit] = named(spans, "taskexec.commit", n)
        assert commit.parent is not None and commit.parent.span_id == request.context.span_id
        assert commit.attributes is not None
        assert isinstance(batch := commit.attributes["taskexec.batch"], int) and batch >= 1
        stored = submitted(runtime, task_id).trace
        assert stored == {
            "traceparent": f"00-{n:032x}-{request.context.span_id:016x}-01",
            "tracestate": f"k={n}",
        }
    assert runtime.parts.commits.batches < 40  # some were committed together


def test_a_bulk_submit_stores_its_request_with_every_task_and_commits_in_one_span(
    exported: InMemorySpanExporter, served: tuple[TestClient[Any], Runtime]
) -> None:
    client, runtime = served
    body = {"tasks": [BODY, BODY, BODY]}
    response = client.post(f"{TASKS}/bulk", json=body, headers={"traceparent": traceparent(9)})
    assert response.status_code == 200, response.text
    spans = tuple(exported.get_finished_spans())
    [request] = named(spans, "POST /api/v1/tasks/bulk", 9)
    [commit] = named(spans, "taskexec.commit", 9)
    assert commit.parent is not None and commit.parent.span_id == request.context.span_id
    assert response.json()["created"] == 3
    for result in response.json()["items"]:
        trace = submitted(runtime, result["task"]["id"]).trace
        assert trace == {"traceparent": f"00-{9:032x}-{request.context.span_id:016x}-01"}


def test_the_outbox_gives_every_message_of_a_task_its_context(
    exported: InMemorySpanExporter, served: tuple[TestClient[Any], Runtime]
) -> None:
    client, runtime = served
    created = client.post(TASKS, json=BODY, headers={"traceparent": traceparent(5)})
    task_id = created.json()["id"]
    assert client.post(f"{TASKS}/{task_id}/cancel", json={}).status_code == 200
    stored = submitted(runtime, task_id).trace
    assert stored is not None
    outbox = Outbox(runtime.service)
    batch = outbox.read(0)
    assert batch is not None
    mine = [m for m in batch.messages if task_id in m.msg_id or task_id.encode() in m.body]
    kinds = {m.subject for m in mine}
    assert {"tasks.events.submitted", "tasks.work.medium", "tasks.events.cancelled"} <= kinds
    for message in mine:
        if message.subject.startswith("tasks.events."):
            event = msgspec.json.decode(message.body)
            assert event["traceparent"] == stored["traceparent"]
            assert "tracestate" not in event  # none came in
        if message.subject.startswith("tasks.work."):
            assert work_decoder.decode(message.body).trace == stored
    # A relay that starts later meets the cancel without the submit: it looks it up once.
    later = Outbox(runtime.service)
    [*_, last] = [m for m in mine if m.subject == "tasks.events.cancelled"]
    position = msgspec.json.decode(last.body)["position"]
    again = later.read(position - 1)
    assert again is not None
    [cancelled] = [m for m in again.messages if m.subject == "tasks.events.cancelled"]
    assert msgspec.json.decode(cancelled.body)["traceparent"] == stored["traceparent"]
    assert later._traces is not None and later._traces.lookups == 1
