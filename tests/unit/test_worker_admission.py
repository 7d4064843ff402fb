"""Unit tests of what a worker does with a pulled batch before anything runs
(workers/executor.Worker._begin): poison, not yet due, marked cancelled, and a bucket
that cannot be read. Stand-ins for NATS; the real path is in tests/integration."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.fakes import FakeMarkers, FakeMsg, FakeNats
from workers.executor import Worker
from workers.protocol import WorkItem, encoder


def work(task_id: str, not_before: datetime | None = None, requeued: int = 0) -> FakeMsg:
    item = WorkItem(
        task_id=task_id,
        attempt=1,
        task_type="AUTOMATED",
        definition_id="d",
        input={},
        timeout_ms=1000,
        priority="MEDIUM",
        handler="nowhere:nothing",
        not_before=not_before.isoformat() if not_before else None,
        requeued=requeued,
    )
    return FakeMsg(encoder.encode(item))


def worker(markers: FakeMarkers) -> tuple[Worker, list[str]]:
    w = Worker(FakeNats(), worker_id="w")  # type: ignore[arg-type]
    w._markers = markers  # type: ignore[assignment]
    started: list[str] = []

    async def run(attempt: Any, msg: Any) -> None:
        started.append(attempt.item.task_id)

    w._run = run  # type: ignore[method-assign]
    return w, started


async def test_one_lookup_for_the_batch_and_marked_tasks_are_dropped() -> None:
    markers = FakeMarkers(marked={"b"})
    w, started = worker(markers)
    later = datetime.now(UTC) + timedelta(seconds=30)
    msgs = [work("a"), work("b"), FakeMsg(b"poison"), work("c", not_before=later), work("d")]
    await w._begin(msgs)  # type: ignore[arg-type]
    await asyncio.sleep(0)
    assert markers.asked == [["a", "b", "d"]]  # once, only for what could start now
    assert started == ["a", "d"]
    assert msgs[1].calls == [("ack", None)]  # cancelled: taken off the queue, not run
    assert msgs[2].calls == [("term", None)]
    assert msgs[3].calls[0][0] == "nak" and 29 < msgs[3].calls[0][1] <= 30
    assert msgs[0].calls == msgs[4].calls == []  # acked by the attempt when it ends


async def test_an_unreadable_bucket_starts_nothing_and_hands_the_work_back() -> None:
    w, started = worker(FakeMarkers(error=TimeoutError()))
    msgs = [work("a"), work("b")]
    await w._begin(msgs)  # type: ignore[arg-type]
    await asyncio.sleep(0)
    assert started == []
    assert [m.calls for m in msgs] == [[("nak", 1.0)], [("nak", 1.0)]]


async def test_work_that_follows_a_requeue_after_the_cancel_runs_and_older_work_does_not() -> None:
    # Each task was cancelled at version 3; "a" and "b" were requeued at version 4
    # (then "b" cancelled again at 5); "c"'s work is from before the cancel.
    markers = FakeMarkers(marked={"a": 3, "b": 5, "c": 3})
    w, started = worker(markers)
    msgs = [work("a", requeued=4), work("b", requeued=4), work("c"), work("a")]
    await w._begin(msgs)  # type: ignore[arg-type]
    await asyncio.sleep(0)
    assert started == ["a"]
    assert [m.calls for m in msgs[1:]] == [[("ack", None)]] * 3
