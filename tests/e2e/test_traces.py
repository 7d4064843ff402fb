"""One task, one trace, across real processes: ``taskexec serve`` and ``taskexec worker``
export over OTLP/HTTP to a receiver of the test's own, on SQLite and PostgreSQL.

The submit's spans (request, commit, relay publish, reports recorded) come from serve,
the attempt's from the worker, all in the caller's trace; an INTEGRATION call sends the
trace on; every CloudEvent of the task carries it; the JSON log lines name it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from nats.js.api import ConsumerConfig, DeliverPolicy

from tests.faults.stack import Stack
from tests.tracing_support import ReceivedSpan, Receiver, wait_for
from workers.nats_server import EmbeddedNatsServer
from workers.protocol import EVENTS_STREAM

CALLER_TRACE, CALLER_SPAN = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
SERVE, WORKER = "taskexec-serve", "taskexec-worker"


@pytest.fixture
def traced(
    database_url: str, nats_server: EmbeddedNatsServer, tmp_path: Path
) -> Iterator[tuple[Stack, Receiver, str]]:
    """serve and a worker exporting to the receiver (batches every 100 ms), JSON logs;
    ``call``: an INTEGRATION definition whose endpoint is the receiver."""
    receiver = Receiver()
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "TASKEXEC_LOG_FORMAT": "json",
    }
    stack = Stack(database_url, nats_server.url, tmp_path, env=env)
    call = {
        "id": "call",
        "name": "Call",
        "type": "INTEGRATION",
        "version": "1",
        "timeout": 10_000,
        "executionConfig": {"endpoint": f"{receiver.url}/charge"},
    }
    (tmp_path / "definitions" / "call.json").write_text(json.dumps(call))
    try:
        base = stack.serve("serve")
        stack.worker("w1")
        yield stack, receiver, base
    finally:
        stack.stop_all()
        receiver.close()


def until_done(client: httpx.Client, task_id: str) -> None:
    def task() -> Any:
        return client.get(f"/api/v1/tasks/{task_id}").json()

    wait_for(lambda: task()["status"] == "COMPLETED", 30.0, task)


def one(spans: list[ReceivedSpan], service: str, name: str) -> ReceivedSpan:
    [found] = [s for s in spans if s.service == service and s.name == name]
    return found


def test_one_task_is_one_trace_across_serve_and_its_worker(
    traced: tuple[Stack, Receiver, str], nats_server: EmbeddedNatsServer
) -> None:
    stack, receiver, base = traced
    client = httpx.Client(base_url=base, headers={"X-API-Key": stack.key}, timeout=10)
    body = {"taskDefinitionId": "slow", "input": {"seconds": 0.3}}  # reports its start apart
    context = {"traceparent": TRACEPARENT, "tracestate": "vendor=1"}
    created = client.post("/api/v1/tasks", json=body, headers=context)
    assert created.status_code == 201, created.text
    task_id = created.json()["id"]
    until_done(client, task_id)

    def whole() -> bool:  # the last span of each process's: its batches come apart
        spans = receiver.trace(CALLER_TRACE)
        names = [(s.service, s.name) for s in spans]
        last = [s.attributes.get("taskexec.report") for s in spans]
        return (WORKER, "taskexec.attempt") in names and "completed" in last

    receiver.until(whole)
    spans = receiver.trace(CALLER_TRACE)
    request = one(spans, SERVE, "POST /api/v1/tasks")
    assert (request.kind, request.parent_id) == ("server", CALLER_SPAN)
    assert request.attributes["http.route"] == "/api/v1/tasks"
    assert request.attributes["http.response.status_code"] == 201
    commit = one(spans, SERVE, "taskexec.commit")
    assert commit.parent_id == request.span_id
    assert commit.attributes["taskexec.command"] == "SubmitTask"
    attempt = one(spans, WORKER, "taskexec.attempt")
    assert (attempt.kind, attempt.parent_id) == ("consumer", request.span_id)
    assert attempt.attributes["taskexec.task_id"] == task_id
    assert attempt.attributes["taskexec.worker"] == "w1"
    assert attempt.attributes["taskexec.outcome"] == "completed"
    records = [s for s in spans if s.name == "taskexec.report.record"]
    assert {s.attributes["taskexec.report"] for s in records} == {"started", "completed"}
    assert {s.parent_id for s in records} == {attempt.span_id}
    [published] = [s for s in spans if s.name == "taskexec.relay.publish"]  # the work item
    assert (published.kind, published.parent_id) == ("producer", request.span_id)
    assert published.attributes["messaging.destination.name"] == "tasks.work.medium"
    assert published.attributes["messaging.message.id"] == f"{task_id}:1:work"
    assert not any(s.error for s in spans)

    # Every CloudEvent of the task carries the stored context: the request span's.
    events = asyncio.run(cloud_events(nats_server.url, task_id, 3))
    assert [e["type"].split(".")[-2] for e in events] == ["submitted", "started", "completed"]
    for event in events:
        assert event["traceparent"] == f"00-{CALLER_TRACE}-{request.span_id}-01"
        assert event["tracestate"] == "vendor=1"

    # The JSON lines of the request and of the attempt name the trace.
    lines = [json.loads(line) for line in (stack.dir / "serve.log").read_text().splitlines()]
    access = [line for line in lines if line.get("logger") == "taskexec.access"]
    assert any(line.get("trace_id") == CALLER_TRACE for line in access), access[-3:]


def test_an_integration_call_sends_the_trace_on(traced: tuple[Stack, Receiver, str]) -> None:
    stack, receiver, base = traced
    client = httpx.Client(base_url=base, headers={"X-API-Key": stack.key}, timeout=10)
    created = client.post("/api/v1/tasks", json={"taskDefinitionId": "call", "input": {"n": 1}})
    assert created.status_code == 201, created.text
    until_done(client, created.json()["id"])
    [call] = receiver.calls
    _, trace_id, parent_id, _ = call["traceparent"].split("-")  # a new trace: none came in

    def whole() -> bool:
        names = {s.name for s in receiver.trace(trace_id)}
        return {"taskexec.report.record", "taskexec.attempt", "POST"} <= names

    receiver.until(whole)
    spans = receiver.trace(trace_id)
    outgoing = one(spans, WORKER, "POST")
    assert (outgoing.kind, outgoing.span_id) == ("client", parent_id)
    assert outgoing.attributes["url.full"] == f"{receiver.url}/charge"
    attempt = one(spans, WORKER, "taskexec.attempt")
    assert outgoing.parent_id == attempt.span_id
    request = one(spans, SERVE, "POST /api/v1/tasks")
    assert request.parent_id == "" and attempt.parent_id == request.span_id


async def cloud_events(url: str, task_id: str, count: int) -> list[dict[str, Any]]:
    nc = await nats.connect(url)
    try:
        sub = await nc.jetstream().subscribe(
            "tasks.events.>",
            stream=EVENTS_STREAM,
            ordered_consumer=True,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
        )
        found: list[dict[str, Any]] = []
        while len(found) < count:
            event = json.loads((await sub.next_msg(timeout=10)).data)
            if event["subject"] == task_id:
                found.append(event)
        await sub.unsubscribe()
        return found
    finally:
        await nc.close()
