"""Unit tests of how unreachable streams are logged (workers/stream_state.py): once per
change of state, never once per check; and of the worker's aging check feeding it
(workers/queue_probe.QueueProbe.order): a JetStream error there is an outage to wait out,
not a reason for the worker to exit. Stand-ins for NATS; the real path is in
tests/faults/test_nats_faults.py."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from nats.js.errors import ServiceUnavailableError

from domain.executor_pool import DEFAULT_POOL
from tests.fakes import FakeClock, FakeNats
from workers.executor import Worker
from workers.protocol import PRIORITIES
from workers.stream_state import StreamState, describe

LOGGER = "tests.stream_state"


def records(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == LOGGER]


def test_one_warning_per_outage_and_one_info_per_recovery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, LOGGER)
    clock = FakeClock(100.0)
    state = StreamState("stream X", logging.getLogger(LOGGER), clock)
    for _ in range(3):
        clock.now += 1
        state.ok()  # healthy: silent
    assert records(caplog) == []
    assert state.reachable

    clock.now += 5  # a check that timed out, 5 s after the last good one
    state.failed(TimeoutError())
    for _ in range(50):  # a long outage, checked every second: still one line
        clock.now += 1
        state.failed("again")
    assert records(caplog) == [(logging.WARNING, "stream X unreachable: TimeoutError")]
    assert not state.reachable

    state.ok()
    state.ok()
    assert records(caplog)[1:] == [
        (
            logging.INFO,
            "stream X reachable again, 55.0 s after the last good check (51 failed checks)",
        )
    ]
    assert state.reachable

    state.failed("no leader")  # the next outage is a new change: logged again
    assert records(caplog)[2:] == [(logging.WARNING, "stream X unreachable: no leader")]


def test_describe_names_the_exception_when_it_has_no_message() -> None:
    assert describe(TimeoutError()) == "TimeoutError"
    assert describe(ValueError("bad")) == "ValueError: bad"
    assert describe("plain") == "plain"


class FlakyJetStream:
    """consumer_info fails (503: no quorum) while ``down``; otherwise nothing pending."""

    def __init__(self) -> None:
        self.down = False
        self.asked = 0

    async def consumer_info(self, stream: str, consumer: str) -> Any:
        self.asked += 1
        if self.down:
            raise ServiceUnavailableError(
                code=503, err_code=10008, description="JetStream system temporarily unavailable"
            )
        return type("Info", (), {"num_pending": 0})()


async def test_the_worker_waits_out_an_unavailable_stream_and_logs_it_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "workers.executor")
    js = FlakyJetStream()
    nc = FakeNats(js)
    worker = Worker(nc, worker_id="w")  # type: ignore[arg-type]

    async def check() -> list[tuple[str, str]]:
        worker._queues._aging_checked = 0.0  # as if a second had passed
        return await worker._queues.order()

    await worker._queues.join([DEFAULT_POOL], 30.0)  # as run() does (one pool: no rotation)
    queues = [(DEFAULT_POOL, priority) for priority in PRIORITIES]
    assert await check() == queues
    js.down = True
    for _ in range(5):  # each check fails; the worker keeps pulling in priority order
        assert await check() == queues
    js.down = False
    assert await check() == queues
    nc.is_connected = False  # reconnecting: not asked at all (it would only time out)
    for _ in range(3):
        assert await check() == queues
    nc.is_connected = True
    assert await check() == queues

    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "workers.executor"]
    assert [level for level, _ in lines] == [logging.WARNING, logging.INFO] * 2
    assert "worker w: stream TASK_WORK unreachable: ServiceUnavailableError" in lines[0][1]
    assert "reachable again, " in lines[1][1] and "(5 failed checks)" in lines[1][1]
    assert lines[2][1] == "worker w: stream TASK_WORK unreachable: not connected to NATS"
    assert "(3 failed checks)" in lines[3][1]
    assert js.asked == 3 + 5 + 3 + 3  # a failing check stops at its first error
