"""When the relay records how far it has published (workers/bridge/relay.py): not between
a task's events that follow each other closely, but once the log has been quiet for a
poll interval, and at least every RECORD_EVERY_S under a steady stream."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pytest

from workers.bridge import relay as relay_module
from workers.bridge.relay import Relay
from workers.protocol import Outgoing


@dataclass
class Batch:
    last_position: int
    messages: list[Outgoing]


@dataclass
class Outbox:
    """The store's log as a list; what the relay did, in order."""

    log: list[int] = field(default_factory=list)
    done: list[str] = field(default_factory=list)

    def position(self) -> int:
        return 0

    def read(self, after: int, limit: int = 500) -> Batch | None:
        new = [p for p in self.log if p > after][:limit]
        if not new:
            return None
        body = b"{}"
        return Batch(new[-1], [Outgoing(f"tasks.events.x.{p}", f"m{p}", body) for p in new])

    def mark_published(self, position: int) -> None:
        self.done.append(f"record {position}")

    def lead(self) -> bool:
        return True

    def step_down(self) -> None:
        pass

    def set_aside(self, messages: Sequence[Outgoing], limit: int) -> None:
        raise AssertionError("nothing is too large here")


@dataclass
class Publisher:
    outbox: Outbox
    max_payload: int = 1 << 20

    async def publish(self, messages: Sequence[Outgoing]) -> None:
        self.outbox.done.append("publish " + ",".join(m.msg_id for m in messages))


async def until(found: Callable[[], object]) -> None:
    for _ in range(2000):
        if found():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("not reached")


async def test_a_task_s_next_event_does_not_wait_behind_the_record() -> None:
    outbox = Outbox(log=[1])
    relay = Relay(outbox, Publisher(outbox), poll_interval=1.0)
    running = asyncio.create_task(relay.run())
    await until(lambda: "publish m1" in outbox.done)
    outbox.log.append(2)  # committed moments later: the relay is told at once
    relay.poke()
    await until(lambda: "record 2" in outbox.done)  # after a quiet poll interval
    relay.stop()
    await running
    assert outbox.done == ["publish m1", "publish m2", "record 2"]


async def test_a_steady_stream_is_recorded_every_record_every_s(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(relay_module, "RECORD_EVERY_S", 0.0)
    outbox = Outbox(log=[1])
    relay = Relay(outbox, Publisher(outbox), poll_interval=1.0)
    running = asyncio.create_task(relay.run())
    await until(lambda: "publish m1" in outbox.done)
    outbox.log.append(2)
    relay.poke()
    await until(lambda: "publish m2" in outbox.done)
    relay.stop()
    await running
    assert outbox.done == ["publish m1", "record 1", "publish m2", "record 2"]


async def test_stopping_records_what_was_published() -> None:
    outbox = Outbox(log=[1, 2, 3])
    relay = Relay(outbox, Publisher(outbox), poll_interval=1.0)
    running = asyncio.create_task(relay.run())
    await until(lambda: outbox.done)
    relay.stop()
    await running
    assert outbox.done == ["publish m1,m2,m3", "record 3"]
