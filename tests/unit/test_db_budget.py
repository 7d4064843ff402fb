"""The connection budget's split, its setting, and what a failed write says it left."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future

import psycopg
import pytest

from api import availability
from api.settings import Settings
from commands.budget import MIN_TOTAL, ConnectionBudget
from commands.db_pool import NotRecorded, OutcomeUnknown, recorded_after
from commands.group_commit import GroupCommit


@pytest.mark.parametrize("total", range(MIN_TOTAL, 41))
@pytest.mark.parametrize("rate_limits", [True, False])
def test_the_split_never_exceeds_the_total_and_leaves_every_pool_a_connection(
    total: int, rate_limits: bool
) -> None:
    budget = ConnectionBudget.split(total, rate_limits)
    assert budget.used == total
    assert budget.event_store >= 1 and budget.read_models >= 1
    assert budget.event_store >= budget.read_models
    assert (budget.rate_limits >= 1) == rate_limits


def test_the_default_split() -> None:
    budget = ConnectionBudget.split(8, rate_limits=True)
    assert (budget.event_store, budget.read_models, budget.rate_limits) == (3, 2, 1)
    assert (budget.monitor, budget.locks, budget.listen) == (1, 1, 0)
    assert ConnectionBudget.split(8, rate_limits=False).event_store == 4
    assert ConnectionBudget.split(10, rate_limits=True).listen == 1


def test_too_small_a_budget_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 5"):
        ConnectionBudget.split(4, rate_limits=False)


def test_the_setting() -> None:
    assert Settings.from_env({}).db_pool_size == 8
    assert Settings.from_env({"TASKEXEC_DB_POOL_SIZE": " 12 "}).db_pool_size == 12
    for bad in ("4", "eight", "-1", "8.5"):
        with pytest.raises(ValueError, match="TASKEXEC_DB_POOL_SIZE"):
            Settings.from_env({"TASKEXEC_DB_POOL_SIZE": bad})


def test_a_failed_write_says_what_it_left_behind() -> None:
    cause = psycopg.OperationalError("server closed the connection unexpectedly")
    unknown = OutcomeUnknown("lost")
    unknown.__cause__ = cause
    assert recorded_after(unknown) is None
    wrapped = RuntimeError("batch failed")
    wrapped.__cause__ = NotRecorded("no connection")
    assert recorded_after(wrapped) is False
    assert recorded_after(psycopg.OperationalError("?")) is None  # not known: unknown


class OpenMonitor:
    """What ``availability`` asks of a DatabaseMonitor, open from the start."""

    is_open = True
    reason = "test"

    def suspect(self, why: str) -> None: ...


def test_a_queued_command_is_withdrawn_and_a_running_one_is_unknown() -> None:
    monitor = OpenMonitor()
    queued: Future[int] = Future()
    with pytest.raises(availability.ServiceUnavailable) as refused:
        asyncio.run(availability.Availability(monitor).answer(queued))  # type: ignore[arg-type]
    assert refused.value.recorded is False and queued.cancelled()

    running: Future[int] = Future()
    running.set_running_or_notify_cancel()
    started = time.monotonic()
    with pytest.raises(availability.ServiceUnavailable) as unknown:
        asyncio.run(availability.Availability(monitor).answer(running))  # type: ignore[arg-type]
    assert unknown.value.recorded is None
    assert unknown.value.details == {"recorded": "unknown", "retryAfter": 1}
    assert time.monotonic() - started < 1.0


def test_the_committer_skips_withdrawn_commands() -> None:
    seen: list[list[int]] = []
    release = threading.Event()

    def execute(batch: Sequence[int]) -> list[int | Exception]:
        release.wait(5)  # the first batch holds the committer while the rest queue
        seen.append(list(batch))
        return list(batch)

    commits: GroupCommit[int, int] = GroupCommit(execute)
    commits.start()
    first = commits.submit(1)
    time.sleep(0.1)  # taken: running
    withdrawn = commits.submit(2)
    assert not first.cancel() and withdrawn.cancel()
    kept = commits.submit(3)
    release.set()
    assert (first.result(5), kept.result(5)) == (1, 3)
    commits.stop()
    assert seen == [[1], [3]]
