"""Unit tests of the worker's inline path (workers/executor.Worker._begin with an
``@inline`` handler): the attempt runs at once, sends one report, and its work is acked
only once that report is stored. Stand-ins for NATS; tests/integration runs the real
path (calculate-order-total is inline)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.fakes import FakeMarkers, FakeMsg, FakeNats
from workers.attempt import Attempt
from workers.executor import Worker
from workers.handlers import HandlerRegistry, inline
from workers.integration import IntegrationExecutor
from workers.protocol import Report, WorkItem, encoder

HERE = __name__


@inline
def double(payload: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"n": payload["n"] * 2}


@inline
def broken(payload: dict[str, Any], context: Any) -> Any:
    raise ValueError("no n here")


@inline
async def awaited(payload: Any, context: Any) -> Any:
    return payload


def plain(payload: Any, context: Any) -> Any:
    return payload


class FakeReports:
    """Keeps what was sent; the test decides when (and whether) JetStream stored it."""

    def __init__(self) -> None:
        self.sent: list[tuple[Report, asyncio.Future[None]]] = []
        self.arrived = asyncio.Event()

    def send(self, report: Report, body: bytes) -> asyncio.Future[None]:
        stored: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.sent.append((report, stored))
        self.arrived.set()
        return stored


def item(task_id: str, handler: str, **fields: Any) -> WorkItem:
    values: dict[str, Any] = {
        "task_id": task_id,
        "attempt": 1,
        "task_type": "AUTOMATED",
        "definition_id": "d",
        "input": {"n": 21},
        "timeout_ms": 1000,
        "priority": "MEDIUM",
        "handler": handler,
        **fields,
    }
    return WorkItem(**values)


def work(task_id: str, handler: str = f"{HERE}:double") -> FakeMsg:
    return FakeMsg(encoder.encode(item(task_id, handler)))


def worker() -> tuple[Worker, FakeReports, list[str]]:
    w = Worker(FakeNats(), worker_id="w", concurrency=8, grace_s=0.05)  # type: ignore[arg-type]
    reports = FakeReports()
    w._markers = FakeMarkers()  # type: ignore[assignment]
    w._reports = reports  # type: ignore[assignment]
    started: list[str] = []

    async def run(attempt: Any, msg: Any) -> None:  # the path of every other handler
        started.append(attempt.item.task_id)

    w._run = run  # type: ignore[method-assign]
    return w, reports, started


async def test_inline_attempts_report_at_once_and_are_acked_once_stored() -> None:
    w, reports, started = worker()
    msgs = [work("a"), work("b"), work("c", f"{HERE}:plain")]
    await w._begin(msgs)  # type: ignore[arg-type]
    await asyncio.sleep(0)
    assert started == ["c"]  # a plain handler still goes through the full attempt
    sent = [report for report, _ in reports.sent]
    assert [(r.task_id, r.kind, r.output) for r in sent] == [
        ("a", "completed", {"n": 42}),
        ("b", "completed", {"n": 42}),
    ]
    assert all(r.started_at is not None and r.started_at <= r.at for r in sent)
    assert w._settling_count == 2  # their slots stay taken until the work is acked
    assert msgs[0].actions == msgs[1].actions == []  # not before JetStream stored the reports
    for _, stored in reports.sent:
        stored.set_result(None)
    await asyncio.sleep(0.01)
    assert msgs[0].actions == msgs[1].actions == ["ack"]
    assert w._settling_count == 0 and not w._settling


async def test_a_raising_inline_handler_is_a_failed_report() -> None:
    w, reports, _ = worker()
    await w._begin([work("a", f"{HERE}:broken")])  # type: ignore[list-item]
    ((report, stored),) = reports.sent
    assert (report.kind, report.error_type, report.error_message) == (
        "failed",
        "ValueError",
        "no n here",
    )
    stored.set_result(None)
    await asyncio.sleep(0.01)


async def test_work_whose_report_was_not_stored_is_not_acked() -> None:
    w, reports, _ = worker()
    msgs = [work("a"), work("b")]
    await w._begin(msgs)  # type: ignore[arg-type]
    reports.sent[0][1].set_exception(TimeoutError("no ack from JetStream"))
    reports.sent[1][1].set_result(None)
    await asyncio.sleep(0.01)
    assert msgs[0].actions == []  # redelivered after ack_wait: runs again (at least once)
    assert msgs[1].actions == ["ack"]
    assert w._settling_count == 0


async def test_a_stopping_worker_hands_back_work_whose_report_is_not_stored() -> None:
    w, reports, _ = worker()
    msgs = [work("a"), work("b")]
    await w._begin(msgs)  # type: ignore[arg-type]
    assert len(reports.sent) == 2  # sent, never stored
    await w._drain_running()  # grace 50 ms; the reports are never stored
    assert msgs[0].actions == msgs[1].actions == ["nak"]
    await asyncio.sleep(0.01)
    assert w._settling_count == 0


@pytest.mark.parametrize(
    ("handler", "fields", "runs_inline"),
    [
        (f"{HERE}:double", {}, True),
        (f"{HERE}:plain", {}, False),  # unmarked: a thread
        (f"{HERE}:awaited", {}, False),  # a coroutine function: awaited on the loop
        (f"{HERE}:missing", {}, False),  # unknown: the full path reports HandlerNotFound
        (f"{HERE}:double", {"isolation": "process"}, False),
        (f"{HERE}:double", {"task_type": "INTEGRATION", "endpoint": "http://x"}, False),
    ],
)
def test_which_attempts_run_inline(handler: str, fields: dict[str, Any], runs_inline: bool) -> None:
    attempt = Attempt(item("a", handler, **fields), "w", HandlerRegistry(), IntegrationExecutor())
    assert (attempt.inline_handler() is not None) is runs_inline


@pytest.mark.parametrize("stored", [True, False])
async def test_a_full_attempt_acks_its_work_only_once_its_report_is_stored(stored: bool) -> None:
    w, reports, _ = worker()
    del w._run  # the real attempt: a plain handler, run in a thread
    msg = work("a", f"{HERE}:plain")
    await w._begin([msg])  # type: ignore[list-item]
    (task,) = w._running
    await asyncio.wait_for(reports.arrived.wait(), 5)
    ((report, future),) = reports.sent
    assert (report.kind, report.output) == ("completed", {"n": 21})
    if stored:
        future.set_result(None)
    else:
        future.set_exception(TimeoutError("no ack from JetStream"))
    await task
    assert msg.actions == (["ack"] if stored else [])  # unstored: redelivered, runs again
