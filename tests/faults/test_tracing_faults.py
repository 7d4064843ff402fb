"""Traces under faults, with real processes: a trace collector that is down (and comes
back) costs no task, and an attempt redelivered after its worker was killed continues
the task's trace on the worker that takes it over."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.conftest import free_port
from tests.faults.stack import ACK_WAIT_S, Stack, settle
from tests.tracing_support import Receiver, wait_for
from workers.nats_server import EmbeddedNatsServer

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{CALLER_TRACE}-00f067aa0ba902b7-01"
TASKS = "/api/v1/tasks"


def test_no_task_waits_for_a_collector_that_is_down_and_traces_resume_when_it_is_back(
    database_url: str, nats_server: EmbeddedNatsServer, tmp_path: Path
) -> None:
    port = free_port()  # nothing listens there yet
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "1",  # seconds: each failed export gives up soon
    }
    stack = Stack(database_url, nats_server.url, tmp_path, env=env)
    receiver: Receiver | None = None
    try:
        base = stack.serve("serve")
        stack.worker("w1")
        client = httpx.Client(base_url=base, headers={"X-API-Key": stack.key}, timeout=10)
        body = {"taskDefinitionId": "slow", "input": {"seconds": 0}}
        ids = [client.post(TASKS, json=body).json()["id"] for _ in range(40)]
        outcome = settle(database_url, ids, within_s=60)
        assert outcome.statuses == {"COMPLETED": 40}, outcome.summary()

        receiver = back = Receiver(port=port)  # the collector comes back
        created = client.post(TASKS, json=body, headers={"traceparent": TRACEPARENT})
        assert created.status_code == 201, created.text
        assert settle(database_url, [created.json()["id"]], within_s=30).statuses == {
            "COMPLETED": 1
        }

        def both() -> bool:
            services = {s.service for s in back.trace(CALLER_TRACE)}
            return services == {"taskexec-serve", "taskexec-worker"}

        wait_for(both, 60.0, stack.logs)
        for name in ("serve", "w1"):
            assert stack.processes[name].poll() is None, stack.logs()
    finally:
        stack.stop_all()
        if receiver is not None:
            receiver.close()


def test_an_attempt_redelivered_after_its_worker_was_killed_continues_the_trace(
    database_url: str, nats_server: EmbeddedNatsServer, tmp_path: Path
) -> None:
    receiver = Receiver()
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    stack = Stack(database_url, nats_server.url, tmp_path, env=env)
    try:
        base = stack.serve("serve")
        stack.worker("w1")
        client = httpx.Client(base_url=base, headers={"X-API-Key": stack.key}, timeout=10)
        body = {"taskDefinitionId": "slow", "input": {"seconds": 2}}
        created = client.post(TASKS, json=body, headers={"traceparent": TRACEPARENT})
        assert created.status_code == 201, created.text
        task_id = created.json()["id"]

        def running() -> bool:
            return bool(client.get(f"{TASKS}/{task_id}").json()["status"] == "RUNNING")

        wait_for(running, 30.0, stack.logs)
        stack.kill("w1")  # mid-attempt: its span is never exported
        stack.worker("w2")
        outcome = settle(database_url, [task_id], within_s=30 + ACK_WAIT_S)
        assert outcome.statuses == {"COMPLETED": 1}, outcome.summary()

        def taken_over() -> bool:
            spans = receiver.trace(CALLER_TRACE)
            return any(s.name == "taskexec.attempt" for s in spans) and any(
                s.attributes.get("taskexec.report") == "completed" for s in spans
            )

        wait_for(taken_over, 30.0, stack.logs)
        spans = receiver.trace(CALLER_TRACE)
        [request] = [s for s in spans if s.name == "POST /api/v1/tasks"]
        [attempt] = [s for s in spans if s.name == "taskexec.attempt"]
        assert attempt.attributes["taskexec.worker"] == "w2"
        assert attempt.parent_id == request.span_id  # the task's context, as stored
        [completed] = [s for s in spans if s.attributes.get("taskexec.report") == "completed"]
        assert completed.parent_id == attempt.span_id
        runs = (tmp_path / "runs.txt").read_text().split()
        assert runs.count(task_id) == 2  # ran on w1, then again on w2
    finally:
        stack.stop_all()
        receiver.close()
