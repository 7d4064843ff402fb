"""A task's own retry settings merged over its definition's policy, field by field: what
the task gives wins, what it leaves out comes from the definition (then the built-in
default). Pure domain, plus the idempotency fingerprint of the given fields."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from commands.idempotency import fingerprint
from commands.messages import SubmitTask
from domain.definition import TaskDefinition
from domain.errors import InvalidValue
from domain.task import Task
from domain.values import Actor, RetryOverrides, RetryPolicy, TaskStatus

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
USER = Actor("alice", "jwt")
WORKER = Actor("w-1", "worker")
BASE = RetryPolicy(2, 1000, 3.0, 5000, ("ValueError",))


def definition(**retry: Any) -> TaskDefinition:
    doc: dict[str, Any] = {
        "id": "d",
        "name": "D",
        "type": "AUTOMATED",
        "version": "1",
        "executionConfig": {"handler": "m:f"},
    }
    if retry:
        doc["retryPolicy"] = retry
    return TaskDefinition.from_document(doc)


def test_a_field_the_task_gives_wins_the_others_stay_the_definitions() -> None:
    assert BASE.overridden_by(RetryOverrides(max_retries=5)) == RetryPolicy(
        5, 1000, 3.0, 5000, ("ValueError",)
    )
    assert BASE.overridden_by(RetryOverrides(max_interval_ms=100)) == RetryPolicy(
        2, 1000, 3.0, 100, ("ValueError",)
    )


def test_nothing_given_is_the_definitions_policy() -> None:
    assert BASE.overridden_by(None) is BASE
    assert BASE.overridden_by(RetryOverrides()) == BASE


def test_every_field_given_replaces_every_field() -> None:
    everything = RetryOverrides(0, 10, 1.5, 20, ("KeyError",))
    assert BASE.overridden_by(everything) == RetryPolicy(0, 10, 1.5, 20, ("KeyError",))


def test_a_given_list_of_non_retryable_errors_replaces_the_definitions() -> None:
    replaced = BASE.overridden_by(RetryOverrides(non_retryable_errors=("KeyError",)))
    assert replaced.non_retryable_errors == ("KeyError",)  # not extended: ValueError is gone
    assert BASE.overridden_by(RetryOverrides(non_retryable_errors=())).non_retryable_errors == ()


def test_without_a_definition_policy_the_built_in_defaults_fill_in() -> None:
    plain = definition()
    assert plain.retry_policy == RetryPolicy()
    merged = plain.retry_policy.overridden_by(RetryOverrides(max_retries=3))
    assert merged == RetryPolicy(3, 60_000, 2.0, None, ())


@pytest.mark.parametrize(
    "fields",
    [
        {"max_retries": -1},
        {"retry_interval_ms": -1},
        {"backoff_multiplier": 0.5},
        {"backoff_multiplier": float("nan")},
        {"max_interval_ms": -1},
        {"non_retryable_errors": ("",)},
    ],
)
def test_given_values_obey_the_checks_of_any_policy(fields: dict[str, Any]) -> None:
    with pytest.raises(InvalidValue):
        RetryOverrides(**fields)


OVERRIDES = st.builds(
    RetryOverrides,
    max_retries=st.none() | st.integers(0, 100),
    retry_interval_ms=st.none() | st.integers(0, 10**7),
    backoff_multiplier=st.none() | st.floats(1, 100),
    max_interval_ms=st.none() | st.integers(0, 10**9),
    non_retryable_errors=st.none() | st.lists(st.text(min_size=1), max_size=3).map(tuple),
)


@given(overrides=OVERRIDES)
def test_each_field_is_the_given_one_else_the_definitions(overrides: RetryOverrides) -> None:
    merged = BASE.overridden_by(overrides)
    for field in dataclasses.fields(RetryPolicy):
        mine = getattr(overrides, field.name)
        expected = getattr(BASE, field.name) if mine is None else mine
        assert getattr(merged, field.name) == expected, field.name


def test_the_submitted_event_records_the_merged_policy_and_the_task_obeys_it() -> None:
    d = definition(maxRetries=2, retryInterval=1000, nonRetryableErrors=["PaymentDeclined"])
    task = Task.submit(
        task_id=uuid4(),
        at=T0,
        actor=USER,
        definition=d,
        input={},
        retry_policy=RetryOverrides(max_retries=5),
    )
    submitted: Any = task.collect_events()[0]
    assert submitted.retry_policy == {
        "max_retries": 5,
        "retry_interval_ms": 1000,
        "backoff_multiplier": 2.0,
        "max_interval_ms": None,
        "non_retryable_errors": ["PaymentDeclined"],
    }
    task.start(attempt=1, worker="w-1", at=T0, actor=WORKER)
    task.fail(attempt=1, error_type="PaymentDeclined", error_message="no", at=T0, actor=WORKER)
    assert task.status is TaskStatus.FAILED  # the definition's list still applies


def test_a_submitted_event_stored_before_the_extensions_still_decodes() -> None:
    stored = {"max_retries": 3, "retry_interval_ms": 500, "backoff_multiplier": 2.0}
    assert RetryPolicy.from_dict(stored) == RetryPolicy(3, 500, 2.0, None, ())


def submit(**fields: Any) -> SubmitTask:
    return SubmitTask("d", {"a": 1}, USER, **fields)


def test_the_fingerprint_covers_the_fields_given_and_only_those() -> None:
    none = fingerprint(submit())
    assert fingerprint(submit(retry_policy=RetryOverrides())) == none  # same effect
    partial = fingerprint(submit(retry_policy=RetryOverrides(max_retries=3)))
    spelled_out = fingerprint(submit(retry_policy=RetryOverrides(3, 60_000, 2.0)))
    assert len({none, partial, spelled_out}) == 3  # 60000 and x2 given: not the definition's
    cleared = fingerprint(submit(retry_policy=RetryOverrides(3, 60_000, 2.0, None, ())))
    assert cleared != spelled_out  # an empty list given clears the definition's
    assert fingerprint(submit(retry_policy=RetryOverrides(max_retries=3))) == partial


def test_a_body_with_the_three_spec_fields_hashes_as_before_the_merge() -> None:
    """An idempotent retry across the upgrade is still the same request."""
    before = {  # what the fingerprint hashed when a task's policy replaced the definition's
        "definition_id": "d",
        "input": {"a": 1},
        "workflow_instance_id": None,
        "priority": "MEDIUM",
        "timeout_ms": None,
        "retry_policy": RetryPolicy(3, 1000, 2.0).as_dict(),
    }
    text = json.dumps(before, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    expected = hashlib.sha256(text.encode()).hexdigest()
    assert fingerprint(submit(retry_policy=RetryOverrides(3, 1000, 2))) == expected
