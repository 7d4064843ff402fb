"""The task cache on real event stores (SQLite and PostgreSQL): kept tasks spare the
reads, and a stale one (another replica, or a save past the cache, changed the task)
is refused by the store and never decides an outcome. Switched off
(TASKEXEC_FAST_TASK_CACHE=off), every command reads the store: the same outcomes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from eventsourcing.persistence import IntegrityError

from commands.errors import Conflict
from commands.fast_paths import FastPaths
from commands.messages import CancelTask, Outcome, RecordReport, SubmitTask
from commands.persistence import DatabaseConfig
from commands.service import TaskService
from domain.values import ANONYMOUS, Actor, TaskStatus
from projections.audit.chain_check import ChainLink, check_chain
from tests.conftest import EXAMPLE_INPUT, EXAMPLE_OUTPUT

ALICE = Actor("alice", "jwt")


def order() -> SubmitTask:
    return SubmitTask(definition_id="calculate-order-total", input=EXAMPLE_INPUT, actor=ALICE)


def report(task: Outcome, kind: str, attempt: int = 1, **fields: object) -> RecordReport:
    return RecordReport(task.task_id, attempt, kind, "w-1", datetime.now(UTC), **fields)  # type: ignore[arg-type]


@pytest.fixture
def replica(service: TaskService, database_url: str) -> Iterator[TaskService]:
    """Another process's service on the same store."""
    other = TaskService(DatabaseConfig.from_url(database_url).eventsourcing_env(), service.catalog)
    yield other
    other.close()


def test_reports_on_tasks_submitted_here_are_applied_without_reading_them_back(
    service: TaskService,
) -> None:
    first, second = service.submit(order()), service.submit(order())
    assert service.record_reports([report(first, "started"), report(second, "started")]) == 2
    done = report(first, "completed", output=EXAMPLE_OUTPUT)
    assert service.record_reports([done]) == 1
    assert (service.task_cache.hits, service.task_cache.misses) == (3, 0)
    assert len(service.task_cache) == 1  # the completed one is dropped
    stored = service.load(first.task_id)
    assert (stored.version, stored.status) == (3, TaskStatus.COMPLETED)
    decoder = service.event_decoder
    links = [
        ChainLink(record.version, record.topic, decoder.state(record))
        for record in service.event_reader.aggregate(first.task_id)
    ]
    assert [link.version for link in links] == [1, 2, 3]
    assert check_chain(first.task_id, links) == []  # stored as it was sealed


def test_a_report_on_a_stale_copy_is_refused_then_applied_on_fresh_state(
    service: TaskService, replica: TaskService
) -> None:
    task = service.submit(order())  # kept here at version 1
    replica.cancel(CancelTask(task.task_id, ANONYMOUS))  # version 2, elsewhere
    with pytest.raises(IntegrityError):  # the stale copy's event takes version 2 again
        service.record_reports([report(task, "started")])
    assert len(service.task_cache) == 0
    assert service.record_reports([report(task, "started")]) == 0  # stale on fresh state
    assert service.load(task.task_id).status is TaskStatus.CANCELLED


def test_a_cancel_on_a_stale_copy_gets_the_answer_of_the_fresh_state(
    service: TaskService, replica: TaskService
) -> None:
    task = service.submit(order())
    replica.cancel(CancelTask(task.task_id, ANONYMOUS, reason="elsewhere"))
    with pytest.raises(Conflict):  # retried on fresh state: already cancelled
        service.cancel(CancelTask(task.task_id, ANONYMOUS))
    fresh, other = service.execute([CancelTask(task.task_id, ANONYMOUS), order()])
    assert isinstance(fresh, Conflict) and isinstance(other, Outcome)
    stored = service.load(task.task_id)
    assert (stored.version, stored.cancel_reason) == (2, "elsewhere")


def test_a_save_past_the_cache_forgets_the_task(service: TaskService) -> None:
    task = service.submit(order())
    service.record_reports([report(task, "started")])
    assert service.expire_attempt(task.task_id, 1, "no report in time")  # Application.save
    assert len(service.task_cache) == 0
    late = report(task, "completed", output=EXAMPLE_OUTPUT)
    assert service.record_reports([late]) == 0  # attempt 1 is over: stale, no clash
    stored = service.load(task.task_id)
    assert stored.version == 3 and stored.status is not TaskStatus.COMPLETED


def test_a_refused_save_pauses_the_cache(service: TaskService, replica: TaskService) -> None:
    """Replicas sharing the reports: one clash, then fresh reads for a while, not a clash
    per batch."""
    first, second = service.submit(order()), service.submit(order())
    replica.record_reports([report(first, "started")])  # the other replica's share
    done = report(first, "completed", output=EXAMPLE_OUTPUT, started_at=datetime.now(UTC))
    with pytest.raises(IntegrityError):  # the kept copy has not seen the start
        service.record_reports([done])
    assert service.record_reports([done]) == 1  # the start is known now: the end alone
    third = service.submit(order())
    assert len(service.task_cache) == 0  # nothing kept meanwhile: no more stale copies
    assert service.record_reports([report(second, "started"), report(third, "started")]) == 2
    assert service.load(first.task_id).status is TaskStatus.COMPLETED


def test_a_save_that_fails_otherwise_forgets_only_its_tasks(
    service: TaskService, monkeypatch: pytest.MonkeyPatch
) -> None:
    touched, other = service.submit(order()), service.submit(order())
    real_put = service.events.put

    def lost(*args: object, **kwargs: object) -> None:
        raise OSError("connection lost")

    monkeypatch.setattr(service.events, "put", lost)
    with pytest.raises(OSError, match="connection lost"):
        service.record_reports([report(touched, "started")])
    monkeypatch.setattr(service.events, "put", real_put)
    assert set(service.task_cache.take([touched.task_id, other.task_id])) == {other.task_id}
    assert service.record_reports([report(touched, "started")]) == 1


# -- switched off ----------------------------------------------------------------------------


@pytest.fixture
def uncached(service: TaskService, database_url: str) -> Iterator[TaskService]:
    """A service on the same store with the task cache switched off."""
    env = DatabaseConfig.from_url(database_url).eventsourcing_env(
        fast_paths=FastPaths(task_cache=False)
    )
    plain = TaskService(env, service.catalog)
    yield plain
    plain.close()


def test_switched_off_every_report_reads_the_store(uncached: TaskService) -> None:
    first, second = uncached.submit(order()), uncached.submit(order())
    assert uncached.record_reports([report(first, "started"), report(second, "started")]) == 2
    assert uncached.record_reports([report(first, "completed", output=EXAMPLE_OUTPUT)]) == 1
    assert not uncached.task_cache.enabled
    assert (len(uncached.task_cache), uncached.task_cache.hits) == (0, 0)
    stored = uncached.load(first.task_id)
    assert (stored.version, stored.status) == (3, TaskStatus.COMPLETED)
    decoder = uncached.event_decoder
    links = [
        ChainLink(record.version, record.topic, decoder.state(record))
        for record in uncached.event_reader.aggregate(first.task_id)
    ]
    assert check_chain(first.task_id, links) == []


def test_switched_off_another_replica_s_change_is_seen_at_once(
    uncached: TaskService, replica: TaskService
) -> None:
    """No stale copy, so no refusal: the answer of the fresh state straight away."""
    task = uncached.submit(order())
    replica.cancel(CancelTask(task.task_id, ANONYMOUS, reason="elsewhere"))
    assert uncached.record_reports([report(task, "started")]) == 0  # stale: discarded
    with pytest.raises(Conflict):
        uncached.cancel(CancelTask(task.task_id, ANONYMOUS))
    stored = uncached.load(task.task_id)
    assert (stored.version, stored.status) == (2, TaskStatus.CANCELLED)
