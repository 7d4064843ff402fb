"""The relay, the worker and the results consumer against a real nats-server,
with a real event store (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import nats
import pytest

from api.runtime import Runtime
from api.settings import Settings
from commands.messages import SubmitTask
from commands.public_events import event_id
from domain.values import ANONYMOUS, Priority
from tests.conftest import EXAMPLE_INPUT, EXAMPLE_OUTPUT
from workers.bridge.outbox import Outbox
from workers.bridge.publisher import JetStreamPublisher
from workers.bridge.relay import Relay
from workers.executor import Worker
from workers.nats_server import EmbeddedNatsServer
from workers.protocol import EVENTS_STREAM, WORK_STREAM, cloud_event_decoder
from workers.streams import ensure_streams

HANDLERS = textwrap.dedent(
    """
    import asyncio

    class PaymentDeclined(Exception):
        pass

    def explode(payload, context):
        raise PaymentDeclined(f"card {payload['card']} declined")

    async def slow(payload, context):
        await asyncio.sleep(payload.get("seconds", 0.2))
        return {"slept": payload.get("seconds", 0.2), "worker": context.worker}
    """
)
DEFINITIONS = {
    "explode.json": {
        "id": "explode",
        "name": "Explode",
        "type": "AUTOMATED",
        "version": "1.0.0",
        "executionConfig": {"handler": "it_handlers:explode"},
    },
    "slow.json": {
        "id": "slow",
        "name": "Slow",
        "type": "AUTOMATED",
        "version": "1.0.0",
        "timeout": 5000,
        "executionConfig": {"handler": "it_handlers:slow"},
    },
}


@pytest.fixture
def user_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user's own handler module on the path and definitions that bind to it."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "it_handlers.py").write_text(HANDLERS)
    monkeypatch.syspath_prepend(str(code))
    definitions = tmp_path / "definitions"
    definitions.mkdir()
    for name, doc in DEFINITIONS.items():
        (definitions / name).write_bytes(msgspec.json.encode(doc))
    return definitions


@pytest.fixture
async def stack(
    database_url: str, nats_server: EmbeddedNatsServer, user_code: Path, tmp_path: Path
) -> AsyncIterator[Runtime]:
    """serve's object graph (projection, relay, results consumer) plus one worker."""
    settings = Settings(database_url=database_url, definitions_dir=user_code, var_dir=tmp_path)
    runtime = await asyncio.to_thread(Runtime.open, settings)
    await runtime.start_messaging(nats_server.url)
    nc = await nats.connect(nats_server.url)
    worker = Worker(nc, worker_id="it-worker", concurrency=2)
    running = asyncio.create_task(worker.run())
    yield runtime
    worker.stop()
    await asyncio.wait_for(running, 10)
    await nc.close()
    await runtime.stop_messaging()
    await asyncio.to_thread(runtime.close)


async def until_finished(runtime: Runtime, task_id: Any, timeout: float = 10) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        row = await asyncio.to_thread(runtime.get_task, task_id)
        if row and row["status"] in ("COMPLETED", "FAILED", "CANCELLED"):
            return row
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"task {task_id} did not finish: {row}")
        await asyncio.sleep(0.02)


def command(definition: str, payload: dict[str, Any], **extra: Any) -> SubmitTask:
    return SubmitTask(definition_id=definition, input=payload, actor=ANONYMOUS, **extra)


async def test_the_example_runs_to_completion(stack: Runtime) -> None:
    outcome = await asyncio.to_thread(stack.submit, command("calculate-order-total", EXAMPLE_INPUT))
    row = await until_finished(stack, outcome.task_id)
    assert row["status"] == "COMPLETED"
    assert row["output"] == EXAMPLE_OUTPUT
    assert row["execution_environment"] == "it-worker"
    assert row["attempts"] == 1
    assert row["duration_ms"] is not None and row["duration_ms"] >= 0


async def test_a_raising_handler_fails_the_task_with_type_and_message(stack: Runtime) -> None:
    outcome = await asyncio.to_thread(stack.submit, command("explode", {"card": "4242"}))
    row = await until_finished(stack, outcome.task_id)
    assert row["status"] == "FAILED"
    error = row["error"]
    assert (error["type"], error["message"]) == ("PaymentDeclined", "card 4242 declined")
    assert "PaymentDeclined: card 4242 declined" in error["traceback"]  # the handler's


async def test_many_tasks_all_finish_exactly_once(stack: Runtime) -> None:
    outcomes = await asyncio.gather(
        *[
            asyncio.to_thread(stack.submit, command("slow", {"seconds": 0.01}, priority=p))
            for p in [Priority.LOW, Priority.HIGH, Priority.CRITICAL, Priority.MEDIUM] * 5
        ]
    )
    rows = [await until_finished(stack, o.task_id) for o in outcomes]
    assert {r["status"] for r in rows} == {"COMPLETED"}
    # Exactly once: each task has Submitted, Started, Completed and nothing more.
    assert {r["version"] for r in rows} == {3}


async def test_relay_publishes_events_and_work_and_a_replay_is_deduplicated(
    database_url: str, nats_server: EmbeddedNatsServer, tmp_path: Path
) -> None:
    runtime = await asyncio.to_thread(
        Runtime.open, Settings(database_url=database_url, var_dir=tmp_path)
    )
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await ensure_streams(js)
    try:
        outcome = await asyncio.to_thread(
            runtime.submit, command("calculate-order-total", EXAMPLE_INPUT)
        )
        outbox = Outbox(runtime.service)
        await _relay_until(
            Relay(outbox, JetStreamPublisher(nc)), lambda: outbox.position() >= outcome.position
        )

        events = await js.stream_info(EVENTS_STREAM)
        work = await js.stream_info(WORK_STREAM)
        assert (events.state.messages, work.state.messages) == (1, 1)
        msg = await js.get_msg(EVENTS_STREAM, 1)
        assert msg.data is not None
        cloud_event = cloud_event_decoder.decode(msg.data)
        assert msg.headers is not None
        assert msg.headers["Nats-Msg-Id"] == cloud_event.id == event_id(outcome.task_id, 1)
        assert cloud_event.type == "io.taskexec.task.submitted.v1"
        assert cloud_event.subject == str(outcome.task_id)
        assert cloud_event.data["taskDefinitionId"] == "calculate-order-total"
        assert cloud_event.position == outcome.position

        # A relay that lost its position (crash before recording it) publishes again:
        # JetStream drops the repeats by Nats-Msg-Id.
        class Forgetful(Outbox):
            def position(self) -> int:
                return 0

            def mark_published(self, position: int) -> None:
                self.done = True

        forgetful = Forgetful(runtime.service)
        forgetful.done = False
        await _relay_until(Relay(forgetful, JetStreamPublisher(nc)), lambda: forgetful.done)
        events = await js.stream_info(EVENTS_STREAM)
        work = await js.stream_info(WORK_STREAM)
        assert (events.state.messages, work.state.messages) == (1, 1)
    finally:
        await nc.close()
        await asyncio.to_thread(runtime.close)


async def _relay_until(relay: Relay, condition: Any) -> None:
    task = asyncio.create_task(relay.run())
    try:
        for _ in range(500):
            if await asyncio.to_thread(condition):
                return
            await asyncio.sleep(0.01)
        raise AssertionError("relay did not publish")
    finally:
        relay.stop()
        await asyncio.wait_for(task, 5)
