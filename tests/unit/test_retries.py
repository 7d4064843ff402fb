"""Retries, timeouts, redelivery and MANUAL completion in the Task aggregate; the backoff
schedule as a property."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.definition import TaskDefinition
from domain.errors import IllegalTransition, StaleResult
from domain.task import NotManual, Task
from domain.values import MAX_DELAY_MS, Actor, RetryPolicy, TaskStatus

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
USER = Actor("alice", "jwt")
WORKER = Actor("w-1", "worker")


def definition(kind: str = "AUTOMATED", **retry: Any) -> TaskDefinition:
    doc: dict[str, Any] = {
        "id": "d",
        "name": "D",
        "type": kind,
        "version": "1",
        "retryPolicy": {"maxRetries": 2, "retryInterval": 1000, "backoffMultiplier": 3, **retry},
        "executionConfig": {"handler": "m:f", "endpoint": "http://x"},
    }
    return TaskDefinition.from_document(doc)


def task_of(d: TaskDefinition) -> Task:
    return Task.submit(task_id=uuid4(), at=T0, actor=USER, definition=d, input={})


def run_attempt(task: Task, attempt: int, at: datetime, worker: str = "w-1") -> None:
    task.start(attempt=attempt, worker=worker, at=at, actor=WORKER)


def test_failures_are_retried_with_backoff_then_fail_for_good() -> None:
    task = task_of(definition())
    at = T0
    for attempt, delay_ms in ((1, 1000), (2, 3000)):
        run_attempt(task, attempt, at)
        at += timedelta(seconds=1)
        task.fail(attempt=attempt, error_type="IOError", error_message="x", at=at, actor=WORKER)
        assert task.status is TaskStatus.PENDING
        assert task.next_attempt_at == at + timedelta(milliseconds=delay_ms)
        assert task.error == {"type": "IOError", "message": "x"}
        at = task.next_attempt_at
    run_attempt(task, 3, at)
    task.fail(attempt=3, error_type="IOError", error_message="y", at=at, actor=WORKER)
    assert task.status is TaskStatus.FAILED
    assert task.attempt == 3
    assert task.next_attempt_at is None
    kinds = [type(e).__name__ for e in task.collect_events()]
    assert kinds == [
        "Submitted",
        "Started",
        "RetryScheduled",
        "Started",
        "RetryScheduled",
        "Started",
        "Failed",
    ]


def test_non_retryable_errors_and_not_retryable_failures_end_at_once() -> None:
    task = task_of(definition(nonRetryableErrors=["ValueError"]))
    run_attempt(task, 1, T0)
    task.fail(attempt=1, error_type="ValueError", error_message="no", at=T0, actor=WORKER)
    assert task.status is TaskStatus.FAILED

    other = task_of(definition())
    run_attempt(other, 1, T0)
    other.fail(
        attempt=1,
        error_type="HTTP_404",
        error_message="gone",
        at=T0,
        actor=WORKER,
        retryable=False,
        output={"bad": True},
    )
    assert other.status is TaskStatus.FAILED
    failed: Any = other.collect_events()[-1]
    assert (failed.output, failed.retryable) == ({"bad": True}, False)


def test_a_last_attempt_that_timed_out_ends_timed_out() -> None:
    task = task_of(definition(maxRetries=1))
    run_attempt(task, 1, T0)
    task.fail(attempt=1, error_type="TIMEOUT", error_message="slow", at=T0, actor=WORKER)
    assert task.status is TaskStatus.PENDING  # a timeout is retried like any failure
    run_attempt(task, 2, T0 + timedelta(seconds=5))
    task.fail(attempt=2, error_type="TIMEOUT", error_message="slow", at=T0, actor=WORKER)
    assert task.status.value == "TIMED_OUT"
    assert task.error == {"type": "TIMEOUT", "message": "slow"}
    with pytest.raises(IllegalTransition):
        task.cancel(reason=None, force=False, at=T0, actor=USER)


def test_max_interval_caps_the_delay() -> None:
    task = task_of(definition(maxRetries=5, maxInterval=2500))
    at = T0
    for attempt in (1, 2, 3):
        run_attempt(task, attempt, at)
        task.fail(attempt=attempt, error_type="E", error_message="", at=at, actor=WORKER)
        assert task.next_attempt_at is not None
        assert task.next_attempt_at - at == timedelta(milliseconds=[1000, 2500, 2500][attempt - 1])
        at = task.next_attempt_at


def test_a_redelivered_attempt_on_another_worker_is_recorded_once() -> None:
    task = task_of(definition())
    run_attempt(task, 1, T0, worker="w-1")
    run_attempt(task, 1, T0 + timedelta(seconds=31), worker="w-2")  # w-1 vanished
    assert task.worker == "w-2"
    with pytest.raises(StaleResult):  # the same report again changes nothing
        run_attempt(task, 1, T0 + timedelta(seconds=32), worker="w-2")
    task.complete(attempt=1, output=1, at=T0 + timedelta(seconds=33), actor=WORKER)
    assert task.status is TaskStatus.COMPLETED


def test_cancelling_a_task_waiting_for_a_retry_stops_it() -> None:
    task = task_of(definition())
    run_attempt(task, 1, T0)
    task.fail(attempt=1, error_type="E", error_message="", at=T0, actor=WORKER)
    task.cancel(reason="enough", force=False, at=T0, actor=USER)
    assert task.status is TaskStatus.CANCELLED
    assert task.next_attempt_at is None
    with pytest.raises(StaleResult):
        run_attempt(task, 2, T0 + timedelta(seconds=2))


def test_manual_tasks_are_finished_by_hand_only() -> None:
    manual = task_of(definition("MANUAL"))
    with pytest.raises(StaleResult):  # no worker runs a MANUAL task
        run_attempt(manual, 1, T0)
    manual.complete_manually(output={"approved": True}, at=T0, actor=USER)
    assert manual.status is TaskStatus.COMPLETED
    assert manual.output == {"approved": True}
    with pytest.raises(IllegalTransition):
        manual.complete_manually(output={}, at=T0, actor=USER)

    refused = task_of(definition("MANUAL"))
    refused.fail_manually(error_type="REJECTED", error_message="no", at=T0, actor=USER)
    assert refused.status is TaskStatus.FAILED

    automated = task_of(definition())
    with pytest.raises(NotManual):
        automated.complete_manually(output={}, at=T0, actor=USER)


@given(
    interval=st.integers(0, 10**7),
    multiplier=st.floats(1, 10, allow_nan=False),
    attempt=st.integers(1, 10_000),
    cap=st.none() | st.integers(0, 10**9),
)
def test_the_delay_follows_the_formula_within_its_caps(
    interval: int, multiplier: float, attempt: int, cap: int | None
) -> None:
    policy = RetryPolicy(3, interval, multiplier, cap)
    delay = policy.delay_ms(attempt)
    limit = min(MAX_DELAY_MS, cap if cap is not None else MAX_DELAY_MS)
    assert 0 <= delay <= limit
    try:
        exact = interval * multiplier ** (attempt - 1)
    except OverflowError:
        exact = float("inf") if interval else 0.0
    assert delay == int(min(exact, limit)) or (exact > limit and delay == limit)


@given(attempt=st.integers(1, 30), multiplier=st.floats(1, 4, allow_nan=False))
def test_delays_never_shrink_from_one_attempt_to_the_next(attempt: int, multiplier: float) -> None:
    policy = RetryPolicy(50, 100, multiplier, 10**8)
    assert policy.delay_ms(attempt + 1) >= policy.delay_ms(attempt)


@given(attempt=st.integers(1, 10), max_retries=st.integers(0, 10), retryable=st.booleans())
def test_allows_retry_exactly_up_to_max_retries(
    attempt: int, max_retries: int, retryable: bool
) -> None:
    policy = RetryPolicy(max_retries, 10, 2.0, None, ("Fatal",))
    assert policy.allows_retry(attempt, "E", retryable) == (retryable and attempt <= max_retries)
    assert policy.allows_retry(attempt, "Fatal", True) is False


def test_as_dict_names_every_field_and_round_trips() -> None:
    import dataclasses

    from domain.values import RetryPolicy

    policy = RetryPolicy(2, 500, 1.5, 9_000, ("Fatal",))
    assert set(policy.as_dict()) == {f.name for f in dataclasses.fields(RetryPolicy)}
    assert RetryPolicy.from_dict(policy.as_dict()) == policy
