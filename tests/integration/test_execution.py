"""Running tasks for real, against a real nats-server: retries with backoff, timeouts,
cancellation of running work, priorities, INTEGRATION and output validation."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import textwrap
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from uuid import UUID

import nats
import pytest
from nats.js.errors import KeyNotFoundError

from api.runtime import Runtime
from api.settings import Settings
from commands.messages import CancelTask, RecordReport, SubmitTask
from domain.task import Task
from domain.values import ANONYMOUS, Priority
from tests.conftest import reply_json
from workers.executor import Worker
from workers.nats_server import EmbeddedNatsServer
from workers.protocol import RESULTS_SUBJECT

HANDLERS = textwrap.dedent(
    """
    import asyncio, os, pathlib, time

    class Flaky(Exception):
        pass

    def flaky(payload, context):
        # fails until the attempt number reaches payload["succeed_on"]
        if context.attempt < payload["succeed_on"]:
            raise Flaky(f"attempt {context.attempt} failed")
        return {"attempt": context.attempt}

    async def sleepy(payload, context):
        for _ in range(int(payload["seconds"] * 100)):
            if context.cancelled:
                pathlib.Path(payload["marker"]).write_text("cleaned up")
                return {"stopped": True}
            await asyncio.sleep(0.01)
        return {"slept": payload["seconds"]}

    def blocking(payload, context):
        pathlib.Path(payload["pidfile"]).write_text(str(os.getpid()))
        time.sleep(payload["seconds"])
        return {"done": True}

    def bad_output(payload, context):
        return {"total": "lots"}

    def quick(payload, context):
        return {"n": payload.get("n", 0)}

    def touch(payload, context):
        pathlib.Path(payload["path"]).write_text("ran")
        return {"ran": True}
    """
)


def definition(ident: str, handler: str, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": ident,
        "name": ident,
        "type": "AUTOMATED",
        "version": "1.0.0",
        "timeout": 10_000,
        "retryPolicy": {"maxRetries": 0, "retryInterval": 0, "backoffMultiplier": 1},
        "executionConfig": {"handler": f"exec_handlers:{handler}"},
    }
    doc.update(extra)
    return doc


DEFINITIONS = [
    definition(
        "flaky",
        "flaky",
        retryPolicy={"maxRetries": 3, "retryInterval": 300, "backoffMultiplier": 2},
    ),
    definition("sleepy", "sleepy"),
    definition(
        "sleepy-timeout",
        "sleepy",
        timeout=300,
        retryPolicy={"maxRetries": 1, "retryInterval": 100, "backoffMultiplier": 1},
    ),
    definition(
        "blocking-process",
        "blocking",
        executionConfig={"handler": "exec_handlers:blocking", "isolation": "process"},
    ),
    definition(
        "slow-retry",
        "flaky",
        retryPolicy={"maxRetries": 3, "retryInterval": 1500, "backoffMultiplier": 1},
    ),
    definition(
        "bad-output",
        "bad_output",
        outputSchema={"type": "object", "properties": {"total": {"type": "number"}}},
    ),
    definition("quick", "quick"),
    definition("touch", "touch"),
]


@pytest.fixture
def definitions_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    code = tmp_path / "code"
    code.mkdir()
    (code / "exec_handlers.py").write_text(HANDLERS)
    monkeypatch.syspath_prepend(str(code))
    directory = tmp_path / "definitions"
    directory.mkdir()
    for doc in DEFINITIONS:
        (directory / f"{doc['id']}.json").write_text(json.dumps(doc))
    return directory


class Stack:
    def __init__(self, runtime: Runtime, nats_url: str) -> None:
        self.runtime = runtime
        self.nats_url = nats_url
        self._workers: list[tuple[Worker, asyncio.Task[None], Any]] = []

    async def start_worker(self, **options: Any) -> Worker:
        nc = await nats.connect(self.nats_url)
        worker = Worker(nc, **options)
        self._workers.append((worker, asyncio.create_task(worker.run()), nc))
        return worker

    async def stop_workers(self) -> None:
        for worker, task, nc in self._workers:
            worker.stop()
            await asyncio.wait_for(task, 30)
            await nc.close()
        self._workers = []

    async def submit(self, definition_id: str, payload: dict[str, Any], **extra: Any) -> UUID:
        command = SubmitTask(definition_id=definition_id, input=payload, actor=ANONYMOUS, **extra)
        outcome = await asyncio.to_thread(self.runtime.submit, command)
        return outcome.task_id

    async def until(self, task_id: UUID, statuses: set[str], timeout: float = 20) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            row = await asyncio.to_thread(self.runtime.get_task, task_id)
            if row and row["status"] in statuses:
                return row
            if loop.time() > deadline:
                raise AssertionError(f"{task_id} never reached {statuses}: {row}")
            await asyncio.sleep(0.02)

    def events(self, task_id: UUID) -> list[Any]:
        return [
            e for _, e in self.runtime.service.read_log(0, 100_000) if e.originator_id == task_id
        ]


@pytest.fixture
async def stack(
    database_url: str, nats_server: EmbeddedNatsServer, definitions_dir: Path, tmp_path: Path
) -> AsyncIterator[Stack]:
    settings = Settings(
        database_url=database_url,
        definitions_dir=definitions_dir,
        var_dir=tmp_path,
        rate_limit="off",
        rate_limit_bulk="off",
    )
    runtime = await asyncio.to_thread(Runtime.open, settings)
    await runtime.start_messaging(nats_server.url)
    built = Stack(runtime, nats_server.url)
    yield built
    await built.stop_workers()
    await runtime.stop_messaging()
    await asyncio.to_thread(runtime.close)


async def test_failures_are_retried_with_backoff_until_success(stack: Stack) -> None:
    await stack.start_worker(worker_id="w")
    task_id = await stack.submit("flaky", {"succeed_on": 3})
    row = await stack.until(task_id, {"COMPLETED", "FAILED"})
    assert row["status"] == "COMPLETED"
    assert row["output"] == {"attempt": 3}
    assert row["attempts"] == 3
    error = row["error"]  # the last error, with the handler's traceback
    assert (error["type"], error["message"]) == ("Flaky", "attempt 2 failed")
    assert error["traceback"].rstrip().endswith("Flaky: attempt 2 failed")
    events = stack.events(task_id)
    kinds = [type(e).__name__ for e in events]
    assert kinds == [
        "Submitted",
        "Started",
        "RetryScheduled",
        "Started",
        "RetryScheduled",
        "Started",
        "Completed",
    ]
    retries = [e for e in events if isinstance(e, Task.RetryScheduled)]
    starts = [e for e in events if isinstance(e, Task.Started)]
    # Attempt n+1 starts no earlier than interval x multiplier^(n-1) after attempt n failed.
    for retry, delay_ms, next_start in zip(retries, (300, 600), starts[1:], strict=True):
        due = datetime.fromisoformat(retry.retry_at)
        assert (due - retry.timestamp).total_seconds() * 1000 == pytest.approx(delay_ms, abs=1)
        assert next_start.timestamp >= due


async def test_a_quick_attempt_is_reported_once_a_longer_one_twice(stack: Stack) -> None:
    nc = await nats.connect(stack.nats_url)
    reports: list[dict[str, Any]] = []

    async def seen(msg: Any) -> None:  # one report, or several gathered in one message
        data = json.loads(msg.data)
        reports.extend(data if isinstance(data, list) else [data])

    await nc.subscribe(RESULTS_SUBJECT, cb=seen)
    await nc.flush()
    await stack.start_worker(worker_id="w", quick_report_s=0.1)
    try:
        quick_id = await stack.submit("quick", {"n": 1})
        await stack.until(quick_id, {"COMPLETED"})
        slow_id = await stack.submit("sleepy", {"seconds": 0.4, "marker": "unused"})
        running = await stack.until(slow_id, {"RUNNING", "COMPLETED"})
        await stack.until(slow_id, {"COMPLETED"})
    finally:
        await nc.close()
    assert running["status"] == "RUNNING"  # its start was reported before its end

    # The quick one: one report, its end carrying its start; both events recorded.
    (only,) = [r for r in reports if r["taskId"] == str(quick_id)]
    assert only["kind"] == "completed" and only["startedAt"] is not None
    started, completed = stack.events(quick_id)[1:]
    assert isinstance(started, Task.Started) and isinstance(completed, Task.Completed)
    assert started.timestamp == _instant(only["startedAt"])
    assert completed.timestamp == _instant(only["at"]) >= started.timestamp
    assert started.worker == "w"

    # The longer one: a started report (with the real start time), then its end alone.
    first, second = [r for r in reports if r["taskId"] == str(slow_id)]
    assert (first["kind"], second["kind"]) == ("started", "completed")
    assert first["startedAt"] is None and second["startedAt"] is None
    slow_started = stack.events(slow_id)[1]
    assert isinstance(slow_started, Task.Started)
    assert slow_started.timestamp == _instant(first["at"])
    assert (_instant(second["at"]) - _instant(first["at"])).total_seconds() >= 0.4


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_an_attempt_past_its_timeout_is_stopped_and_the_last_one_times_out(
    stack: Stack, tmp_path: Path
) -> None:
    await stack.start_worker(worker_id="w")
    task_id = await stack.submit("sleepy-timeout", {"seconds": 5, "marker": str(tmp_path / "m")})
    row = await stack.until(task_id, {"TIMED_OUT", "FAILED", "COMPLETED"})
    assert row["status"] == "TIMED_OUT"
    assert row["attempts"] == 2
    assert row["error"]["type"] == "TIMEOUT"
    kinds = [type(e).__name__ for e in stack.events(task_id)]
    assert kinds == ["Submitted", "Started", "RetryScheduled", "Started", "TimedOut"]


async def test_cancel_of_a_running_task_reaches_the_handler(stack: Stack, tmp_path: Path) -> None:
    await stack.start_worker(worker_id="w")
    marker = tmp_path / "cleaned"
    task_id = await stack.submit("sleepy", {"seconds": 8, "marker": str(marker)})
    await stack.until(task_id, {"RUNNING"})
    outcome = await asyncio.to_thread(
        stack.runtime.cancel, CancelTask(task_id, ANONYMOUS, reason="stop", force=False)
    )
    assert outcome.status == "CANCELLED"
    for _ in range(100):  # the worker learns of it within a second
        if marker.exists():
            break
        await asyncio.sleep(0.01)
    assert marker.read_text() == "cleaned up"
    await asyncio.sleep(0.5)
    # What the handler returned afterwards is discarded: no COMPLETED after CANCELLED.
    kinds = [type(e).__name__ for e in stack.events(task_id)]
    assert kinds == ["Submitted", "Started", "Cancelled"]


async def test_a_forced_cancel_kills_a_process_isolated_handler(
    stack: Stack, tmp_path: Path
) -> None:
    await stack.start_worker(worker_id="w")
    pidfile = tmp_path / "pid"
    task_id = await stack.submit("blocking-process", {"seconds": 30, "pidfile": str(pidfile)})
    await stack.until(task_id, {"RUNNING"})
    for _ in range(500):
        if pidfile.exists() and pidfile.read_text():
            break
        await asyncio.sleep(0.01)
    child = int(pidfile.read_text())
    assert _alive(child)
    await asyncio.to_thread(stack.runtime.cancel, CancelTask(task_id, ANONYMOUS, force=True))
    for _ in range(100):
        if not _alive(child):
            break
        await asyncio.sleep(0.01)
    assert not _alive(child), "the handler's process survived a forced cancel"
    await asyncio.sleep(0.3)
    assert [type(e).__name__ for e in stack.events(task_id)][-1] == "Cancelled"


async def test_cancelling_a_task_waiting_for_its_retry_stops_the_retry(stack: Stack) -> None:
    await stack.start_worker(worker_id="w")
    task_id = await stack.submit("slow-retry", {"succeed_on": 99})
    row = await stack.until(task_id, {"PENDING"}, timeout=10)
    while row["next_attempt_at"] is None:
        row = await stack.until(task_id, {"PENDING"})
        await asyncio.sleep(0.02)
    await asyncio.to_thread(stack.runtime.cancel, CancelTask(task_id, ANONYMOUS))
    await asyncio.sleep(2.5)  # past the retry's due time
    kinds = [type(e).__name__ for e in stack.events(task_id)]
    assert kinds == ["Submitted", "Started", "RetryScheduled", "Cancelled"]


async def test_with_a_backlog_higher_priorities_start_first(stack: Stack) -> None:
    ids: dict[UUID, Priority] = {}
    for priority in [Priority.LOW, Priority.MEDIUM, Priority.HIGH, Priority.CRITICAL] * 3:
        ids[await stack.submit("quick", {}, priority=priority)] = priority
    # Let the relay put the whole backlog on the queues before anyone takes work.
    await asyncio.sleep(0.5)
    await stack.start_worker(worker_id="w", concurrency=1)
    rows = [await stack.until(task_id, {"COMPLETED"}) for task_id in ids]
    order = [ids[UUID(r["id"])] for r in sorted(rows, key=lambda r: r["start_time"])]
    assert (
        order
        == [Priority.CRITICAL] * 3
        + [Priority.HIGH] * 3
        + [Priority.MEDIUM] * 3
        + [Priority.LOW] * 3
    )


async def test_low_does_not_starve_under_constant_high_load(stack: Stack) -> None:
    await stack.start_worker(worker_id="w", concurrency=1, starvation_s=0.5)
    low = await stack.submit("quick", {}, priority=Priority.LOW)
    highs = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    started_low = None
    while loop.time() < deadline:  # keep HIGH work queued the whole time
        # Three at a time: more HIGH work arrives than the worker finishes, even when a
        # loaded machine makes each submit slower than one HIGH task (50 ms).
        highs += await asyncio.gather(
            *(
                stack.submit(
                    "sleepy", {"seconds": 0.05, "marker": "/dev/null"}, priority=Priority.HIGH
                )
                for _ in range(3)
            )
        )
        row = await asyncio.to_thread(stack.runtime.get_task, low)
        if row and row["status"] == "COMPLETED":
            started_low = row["start_time"]
            break
    assert started_low is not None, "LOW never ran under constant HIGH load"
    pending_high = [
        r
        for r in [await asyncio.to_thread(stack.runtime.get_task, h) for h in highs]
        if r and r["status"] == "PENDING"
    ]
    assert pending_high, "the HIGH load was not constant: nothing was waiting"


async def test_an_output_breaking_the_schema_fails_the_task(stack: Stack) -> None:
    await stack.start_worker(worker_id="w")
    task_id = await stack.submit("bad-output", {})
    row = await stack.until(task_id, {"FAILED", "COMPLETED"})
    assert row["status"] == "FAILED"
    assert row["error"]["type"] == "OUTPUT_VALIDATION_ERROR"
    failed = stack.events(task_id)[-1]
    assert isinstance(failed, Task.Failed)
    assert failed.output == {"total": "lots"}  # kept in the history


class _Endpoint(BaseHTTPRequestHandler):
    hits: dict[str, int] = {}

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        count = self.hits[self.path] = self.hits.get(self.path, 0) + 1
        status, answer = 200, {"charged": body.get("amount")}
        if self.path == "/flaky" and count < 2:
            status, answer = 503, {"error": "busy"}
        elif self.path == "/throttled" and count < 2:
            status, answer = 429, {"error": "slow down"}
        elif self.path == "/gone":
            status, answer = 404, {"error": "no such account"}
        reply_json(self, status, answer)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def endpoint() -> Iterator[str]:
    _Endpoint.hits = {}  # per test: the PostgreSQL run must see a fresh endpoint too
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Endpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


async def test_integration_tasks_call_their_endpoint(
    database_url: str, nats_server: EmbeddedNatsServer, endpoint: str, tmp_path: Path
) -> None:
    directory = tmp_path / "integration"
    directory.mkdir()
    for name, path in (
        ("pay-ok", "/ok"),
        ("pay-flaky", "/flaky"),
        ("pay-throttled", "/throttled"),
        ("pay-gone", "/gone"),
        ("pay-down", None),
    ):
        url = f"{endpoint}{path}" if path else "http://127.0.0.1:9/down"
        doc = {
            "id": name,
            "name": name,
            "type": "INTEGRATION",
            "version": "1",
            "retryPolicy": {"maxRetries": 1, "retryInterval": 50, "backoffMultiplier": 1},
            "executionConfig": {"endpoint": url},
        }
        (directory / f"{name}.json").write_text(json.dumps(doc))
    runtime = await asyncio.to_thread(
        Runtime.open,
        Settings(
            database_url=database_url,
            definitions_dir=directory,
            var_dir=tmp_path,
            rate_limit="off",
            rate_limit_bulk="off",
        ),
    )
    await runtime.start_messaging(nats_server.url)
    stack = Stack(runtime, nats_server.url)
    try:
        await stack.start_worker(worker_id="w")
        ok = await stack.until(await stack.submit("pay-ok", {"amount": 5}), {"COMPLETED", "FAILED"})
        assert (ok["status"], ok["output"]) == ("COMPLETED", {"charged": 5})
        flaky = await stack.until(
            await stack.submit("pay-flaky", {"amount": 7}), {"COMPLETED", "FAILED"}
        )
        assert (flaky["status"], flaky["attempts"]) == ("COMPLETED", 2)  # 503 is retried
        throttled = await stack.until(
            await stack.submit("pay-throttled", {"amount": 3}), {"COMPLETED", "FAILED"}
        )
        assert (throttled["status"], throttled["attempts"]) == ("COMPLETED", 2)  # so is 429
        gone = await stack.until(await stack.submit("pay-gone", {}), {"COMPLETED", "FAILED"})
        assert (gone["status"], gone["attempts"]) == ("FAILED", 1)  # other 4xx: at once
        assert gone["error"]["type"] == "HTTP_404"
        down = await stack.until(await stack.submit("pay-down", {}), {"COMPLETED", "FAILED"})
        assert (down["status"], down["attempts"]) == ("FAILED", 2)  # retried, then failed
        assert down["error"]["type"] == "CONNECTION_ERROR"
    finally:
        await stack.stop_workers()
        await runtime.stop_messaging()
        await asyncio.to_thread(runtime.close)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z" and os.path.exists(f"/proc/{pid}")


async def test_an_attempt_whose_worker_vanished_is_detected_and_retried(stack: Stack) -> None:
    # No worker runs here: the attempt "starts" by a report, then nothing comes back.
    task_id = await stack.submit("flaky", {"succeed_on": 1}, timeout_ms=1)
    started = RecordReport(task_id, 1, "started", "ghost", datetime.now(UTC))
    await asyncio.to_thread(stack.runtime.service.record_reports, [started])
    await stack.until(task_id, {"RUNNING"})
    expired = await asyncio.to_thread(stack.runtime.expire_lost_attempts, 0.0)
    assert expired == 1
    row = await stack.until(task_id, {"PENDING"})
    assert row["error"]["type"] == "WORKER_LOST"
    assert row["next_attempt_at"] is not None  # retried per its policy
    assert await asyncio.to_thread(stack.runtime.expire_lost_attempts, 0.0) == 0


async def test_a_poison_message_never_blocks_the_queue(stack: Stack) -> None:
    nc = await nats.connect(stack.nats_url)
    try:
        await nc.jetstream().publish("tasks.work.high", b"\x00 not a work item")
    finally:
        await nc.close()
    await stack.start_worker(worker_id="w", concurrency=1)
    task_id = await stack.submit("quick", {"n": 1}, priority=Priority.HIGH)
    row = await stack.until(task_id, {"COMPLETED", "FAILED"})
    assert (row["status"], row["output"]) == ("COMPLETED", {"n": 1})
    nc = await nats.connect(stack.nats_url)
    try:  # the poison message was terminated, not left to be redelivered
        info = await nc.jetstream().consumer_info("TASK_WORK", "work-high")
        assert info.num_ack_pending == 0
        assert info.num_pending == 0
    finally:
        await nc.close()


async def test_a_stopping_worker_hands_unfinished_work_back_at_once(
    stack: Stack, tmp_path: Path
) -> None:
    first = await stack.start_worker(worker_id="leaving", grace_s=0.2)
    task_id = await stack.submit("sleepy", {"seconds": 1.0, "marker": str(tmp_path / "m")})
    await stack.until(task_id, {"RUNNING"})
    first.stop()  # grace 0.2 s < the 1 s task: handed back (nak), not left to ack wait
    await asyncio.sleep(0.5)
    await stack.start_worker(worker_id="staying")
    row = await stack.until(task_id, {"COMPLETED"}, timeout=10)  # well before the 30 s ack wait
    assert row["execution_environment"] == "staying"
    assert row["attempts"] == 1


async def test_a_task_cancelled_before_any_worker_took_it_never_runs(
    stack: Stack, tmp_path: Path
) -> None:
    ids = [await stack.submit("touch", {"path": str(tmp_path / f"ran-{n}")}) for n in range(6)]
    for task_id in ids[::2]:
        await asyncio.to_thread(stack.runtime.cancel, CancelTask(task_id, ANONYMOUS))
    nc = await nats.connect(stack.nats_url)
    try:  # the relay has marked them before the worker looks (one lookup for the batch)
        bucket = await nc.jetstream().key_value("TASK_CANCELLED")
        for task_id in ids[::2]:
            for _ in range(200):
                with contextlib.suppress(KeyNotFoundError):
                    await bucket.get(str(task_id))
                    break
                await asyncio.sleep(0.02)
        await stack.start_worker(worker_id="w", concurrency=8)
        for task_id in ids[1::2]:
            await stack.until(task_id, {"COMPLETED"})
        info = await nc.jetstream().consumer_info("TASK_WORK", "work-medium")
        assert (info.num_pending, info.num_ack_pending) == (0, 0)  # taken off the queue
    finally:
        await nc.close()
    ran = sorted(name for name in os.listdir(tmp_path) if name.startswith("ran-"))
    assert ran == ["ran-1", "ran-3", "ran-5"]  # the handler never ran for the cancelled ones
    for task_id in ids[::2]:
        kinds = [type(e).__name__ for e in stack.events(task_id)]
        assert kinds == ["Submitted", "Cancelled"]


async def test_a_message_of_several_reports_records_each(stack: Stack) -> None:
    ids = [await stack.submit("quick", {"n": n}) for n in range(3)]
    at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    reports = [
        {
            "taskId": str(i),
            "attempt": 1,
            "kind": "completed",
            "worker": "w",
            "at": at,
            "output": {"n": n},
            "startedAt": at,
        }
        for n, i in enumerate(ids)
    ]
    nc = await nats.connect(stack.nats_url)
    try:
        await nc.jetstream().publish(RESULTS_SUBJECT, json.dumps(reports).encode())
    finally:
        await nc.close()
    for n, task_id in enumerate(ids):
        row = await stack.until(task_id, {"COMPLETED"})
        assert row["output"] == {"n": n}
        kinds = [type(e).__name__ for e in stack.events(task_id)]
        assert kinds == ["Submitted", "Started", "Completed"]
