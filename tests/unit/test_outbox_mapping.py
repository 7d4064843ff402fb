"""Unit tests of the outbox mapping: stored events -> CloudEvents and work items (no NATS)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID, uuid5

import msgspec
import pytest
from eventsourcing.persistence import Mapper
from hypothesis import given, settings
from hypothesis import strategies as st

from commands.public_events import event_data, event_id, rfc3339
from commands.transcoder import PayloadSafeTranscoder
from domain.definition import TaskDefinition
from domain.task import Task
from domain.values import Actor, Priority, RetryOverrides, TaskType
from workers.bridge.outbox import to_messages, work_again, work_for
from workers.protocol import (
    CloudEvent,
    Outgoing,
    WorkItem,
    cloud_event_decoder,
    work_decoder,
    work_identity,
)

T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
TASK_ID = UUID("7d3c1e7a-5b8e-4c1a-9f00-0123456789ab")
USER = Actor(id="alice", kind="jwt")
WORKER = Actor(id="worker-1", kind="worker")
HANDLER = "workers.handlers.orders:calculate_order_total"
INPUT = {"orderId": "ORD-123", "items": [{"id": "ITEM-1", "quantity": 2, "price": 10.99}]}


def definition(task_type: str = "AUTOMATED") -> TaskDefinition:
    execution: dict[str, Any] = {}
    if task_type == "AUTOMATED":
        execution["handler"] = HANDLER
    elif task_type == "INTEGRATION":
        execution["endpoint"] = "http://127.0.0.1:9/payments"
    return TaskDefinition(
        id=f"def-{task_type.lower()}",
        name="Def",
        description="",
        type=TaskType(task_type),
        version="1.2.0",
        timeout_ms=60_000,
        execution_config=execution,
    )


def submit(task_type: str = "AUTOMATED", priority: Priority = Priority.MEDIUM) -> Task:
    return Task.submit(
        task_id=TASK_ID,
        at=T0,
        actor=USER,
        definition=definition(task_type),
        input=INPUT,
        workflow_instance_id="wf-9",
        priority=priority,
    )


def completed_history() -> list[Any]:
    task = submit()
    task.start(attempt=1, worker="host-a/1", at=T0 + timedelta(seconds=1), actor=WORKER)
    task.complete(attempt=1, output={"total": 50.73}, at=T0 + timedelta(seconds=2), actor=WORKER)
    return list(task.collect_events())


def decode_event(message: Outgoing) -> CloudEvent:
    return cloud_event_decoder.decode(message.body)


def make_mapper() -> Mapper[UUID]:
    """The mapper TaskService stores events with."""
    return Mapper(transcoder=PayloadSafeTranscoder())


def test_event_id_is_stable_and_distinct_per_version():
    assert event_id(TASK_ID, 1) == str(uuid5(TASK_ID, "1"))
    assert event_id(TASK_ID, 1) == event_id(TASK_ID, 1)
    assert len({event_id(TASK_ID, v) for v in range(1, 20)}) == 19
    assert event_id(TASK_ID, 1) != event_id(UUID(int=1), 1)


@settings(max_examples=300)
@given(task_id=st.uuids(), version=st.integers(min_value=0, max_value=10**12))
def test_event_id_is_the_uuid5_of_the_version(task_id: UUID, version: int):
    assert event_id(task_id, version) == str(uuid5(task_id, str(version)))


def test_rfc3339_uses_milliseconds_and_z():
    assert rfc3339(T0) == "2024-05-01T12:00:00.123Z"
    # Another offset keeps its offset (events are recorded in UTC; this is the rule).
    plus_two = T0.astimezone(timezone(timedelta(hours=2)))
    assert rfc3339(plus_two) == "2024-05-01T14:00:00.123+02:00"
    assert rfc3339(T0.replace(tzinfo=None)) == "2024-05-01T12:00:00.123"


def test_submitted_gives_an_event_and_a_work_item():
    submitted = completed_history()[0]
    messages = to_messages(submitted, 41)
    assert [m.subject for m in messages] == ["tasks.events.submitted", "tasks.work.medium"]
    event_message, work_message = messages
    task_id = str(TASK_ID)

    event = decode_event(event_message)
    assert event.specversion == "1.0"
    assert event.datacontenttype == "application/json"
    assert event.source == "/taskexec"
    assert event.type == "io.taskexec.task.submitted.v1"
    assert event.subject == task_id
    assert event.id == event_id(TASK_ID, 1) == event_message.msg_id
    assert event.time == "2024-05-01T12:00:00.123Z"
    assert event.taskversion == 1
    assert event.position == 41
    assert event.data == {
        "taskId": task_id,
        "status": "PENDING",
        "taskDefinitionId": "def-automated",
        "definitionVersion": "1.2.0",
        "workflowInstanceId": "wf-9",
        "type": "AUTOMATED",
        "priority": "MEDIUM",
        "input": INPUT,
        "timeout": 60_000,
        "actor": {"id": "alice", "kind": "jwt"},
    }

    assert work_message.msg_id == f"{task_id}:1:work"
    item = work_decoder.decode(work_message.body)
    assert item == WorkItem(
        task_id=task_id,
        attempt=1,
        task_type="AUTOMATED",
        definition_id="def-automated",
        input=INPUT,
        timeout_ms=60_000,
        priority="MEDIUM",
        handler=HANDLER,
        endpoint=None,
    )
    raw = msgspec.json.decode(work_message.body)
    assert set(raw) == {
        "taskId",
        "attempt",
        "taskType",
        "definitionId",
        "input",
        "timeoutMs",
        "priority",
        "handler",
        "endpoint",
        "notBefore",
        "isolation",
        "redelivery",
        "requeued",
        "trace",
        "auth",
        "executor",
        "cpu",
        "memory",
        "securityLevel",
        "allowEnv",
        "maxConcurrency",
    }
    # No resourceRequirements, no securityContext: no requests, as ever.
    assert (raw["cpu"], raw["memory"], raw["securityLevel"], raw["allowEnv"]) == (
        None,
        None,
        "LOW",
        None,
    )
    assert (raw["notBefore"], raw["isolation"], raw["redelivery"]) == (None, "thread", 0)
    assert raw["trace"] is None  # submitted with tracing off
    assert raw["auth"] is None  # no INTEGRATION credentials
    assert raw["requeued"] == 0  # not after a requeue: any cancel marker stops it


def test_started_and_completed_give_only_the_event():
    _, started, completed = completed_history()

    [message] = to_messages(started, 42)
    assert message.subject == "tasks.events.started"
    event = decode_event(message)
    assert event.type == "io.taskexec.task.started.v1"
    assert event.specversion == "1.0"
    assert event.subject == str(TASK_ID)
    assert event.id == event_id(TASK_ID, 2) == message.msg_id
    assert event.taskversion == 2
    assert event.position == 42
    assert event.time == "2024-05-01T12:00:01.123Z"
    assert event.data == {
        "taskId": str(TASK_ID),
        "status": "RUNNING",
        "attempt": 1,
        "executionEnvironment": "host-a/1",
        "actor": {"id": "worker-1", "kind": "worker"},
    }

    [message] = to_messages(completed, 43)
    assert message.subject == "tasks.events.completed"
    event = decode_event(message)
    assert event.type == "io.taskexec.task.completed.v1"
    assert event.id == event_id(TASK_ID, 3) == message.msg_id
    assert event.taskversion == 3
    assert event.position == 43
    assert event.data == {
        "taskId": str(TASK_ID),
        "status": "COMPLETED",
        "attempt": 1,
        "output": {"total": 50.73},
        "actor": {"id": "worker-1", "kind": "worker"},
    }


def test_a_scheduled_retry_gives_the_next_attempt_not_before_its_time():
    task = Task.submit(
        task_id=TASK_ID,
        at=T0,
        actor=USER,
        definition=definition("AUTOMATED"),
        input=INPUT,
        retry_policy=RetryOverrides(max_retries=2, retry_interval_ms=500),
    )
    task.collect_events()
    task.start(attempt=1, worker="w", at=T0, actor=WORKER)
    task.fail(attempt=1, error_type="IOError", error_message="x", at=T0, actor=WORKER)
    retry = task.collect_events()[-1]
    assert isinstance(retry, Task.RetryScheduled)
    event_message, work_message = to_messages(retry, 9, lambda _id, _version: task)
    event = decode_event(event_message)
    assert event.type == "io.taskexec.task.retry_scheduled.v1"
    assert event.data["nextAttemptAt"] == rfc3339(datetime.fromisoformat(retry.retry_at))
    assert event.data["nextAttemptAt"].endswith("Z")
    item = work_decoder.decode(work_message.body)
    assert (item.attempt, item.not_before) == (2, retry.retry_at)
    assert work_message.msg_id == f"{TASK_ID}:2:work"


def test_failed_and_cancelled_events():
    task = submit()
    task.start(attempt=1, worker="w", at=T0, actor=WORKER)
    task.fail(
        attempt=1,
        error_type="ValueError",
        error_message="bad",
        at=T0,
        actor=WORKER,
        retryable=False,
    )
    [message] = to_messages(task.collect_events()[-1], 7)
    event = decode_event(message)
    assert message.subject == "tasks.events.failed"
    assert event.type == "io.taskexec.task.failed.v1"
    assert event.data["status"] == "FAILED"
    assert event.data["error"] == {"type": "ValueError", "message": "bad"}
    assert event.data["attempt"] == 1

    task = submit()
    task.cancel(reason="stop", force=True, at=T0, actor=USER)
    message, marker = to_messages(task.collect_events()[-1], 8)
    # The cancel marker workers look up before they start an attempt.
    assert marker.subject == f"$KV.TASK_CANCELLED.{TASK_ID}"
    assert marker.msg_id == f"{TASK_ID}:cancelled:2"  # a later cancel has its own
    assert msgspec.json.decode(marker.body) == {
        "force": True,
        "at": "2024-05-01T12:00:00.123Z",
        "taskversion": 2,  # a requeue after it (a higher version) outlives it
    }
    event = decode_event(message)
    assert message.subject == "tasks.events.cancelled"
    assert event.type == "io.taskexec.task.cancelled.v1"
    assert event.data == {
        "taskId": str(TASK_ID),
        "status": "CANCELLED",
        "reason": "stop",
        "force": True,
        "actor": {"id": "alice", "kind": "jwt"},
    }


def test_msg_ids_are_unique_across_a_history():
    messages = [m for n, e in enumerate(completed_history()) for m in to_messages(e, n + 1)]
    ids = [m.msg_id for m in messages]
    assert len(ids) == 4
    assert len(set(ids)) == len(ids)


def test_mapping_is_deterministic():
    events = completed_history()
    assert [to_messages(e, 5) for e in events] == [to_messages(e, 5) for e in completed_history()]


@pytest.mark.parametrize(
    ("priority", "subject"),
    [
        (Priority.LOW, "tasks.work.low"),
        (Priority.MEDIUM, "tasks.work.medium"),
        (Priority.HIGH, "tasks.work.high"),
        (Priority.CRITICAL, "tasks.work.critical"),
    ],
)
def test_work_subject_follows_the_priority(priority: Priority, subject: str):
    messages = to_messages(submit(priority=priority).collect_events()[0], 1)
    assert messages[1].subject == subject
    assert work_decoder.decode(messages[1].body).priority == priority.value
    assert decode_event(messages[0]).data["priority"] == priority.value


def test_integration_work_item_carries_the_endpoint():
    messages = to_messages(submit("INTEGRATION").collect_events()[0], 1)
    item = work_decoder.decode(messages[1].body)
    assert item.task_type == "INTEGRATION"
    assert item.endpoint == "http://127.0.0.1:9/payments"
    assert item.handler is None


def test_integration_work_items_carry_the_auth_config_of_every_attempt():
    auth = {"type": "headers", "headers": {"X-Api-Key": {"fromEnv": "PAY_KEY"}}}
    base = definition("INTEGRATION")
    config = {**base.execution_config, "auth": auth}
    task = Task.submit(
        task_id=TASK_ID,
        at=T0,
        actor=USER,
        definition=TaskDefinition(**{**vars(base), "execution_config": config}),
        input=INPUT,
    )
    first = work_decoder.decode(to_messages(task.collect_events()[0], 1)[1].body)
    assert first.auth == auth  # the names of the credentials, as the definition gives them
    assert work_for(task, 2).auth == auth  # a retry's work item, from the task's state


def test_manual_submitted_gives_no_work_item():
    messages = to_messages(submit("MANUAL").collect_events()[0], 1)
    assert [m.subject for m in messages] == ["tasks.events.submitted"]
    event = decode_event(messages[0])
    assert event.data["type"] == "MANUAL"
    assert event.data["status"] == "PENDING"


def test_an_unknown_event_gives_no_messages():
    class Other:
        pass

    assert to_messages(Other(), 1) == []
    assert event_data(Other()) == {}


def test_event_data_uses_camel_case_keys():
    keys = set()
    for event in completed_history():
        keys |= set(event_data(event))
    assert "_" not in "".join(keys)
    assert {"taskDefinitionId", "workflowInstanceId", "executionEnvironment"} <= keys


def test_decoded_stored_events_give_the_same_messages():
    """The relay maps events read back from the store: the round trip must not change them."""
    mapper = make_mapper()
    events = completed_history()
    decoded = [mapper.to_domain_event(mapper.to_stored_event(e)) for e in events]
    for position, (original, restored) in enumerate(zip(events, decoded, strict=True), 1):
        assert to_messages(restored, position) == to_messages(original, position)


def requeued_after(ending: str, task_type: str = "AUTOMATED") -> Task:
    """A task that failed (or was cancelled) at attempt 1, then requeued."""
    task = submit(task_type)
    if ending == "cancelled":
        task.cancel(reason="stop", force=False, at=T0, actor=USER)
    else:
        task.start(attempt=1, worker="w", at=T0, actor=WORKER)
        task.fail(attempt=1, error_type="IOError", error_message="x", at=T0, actor=WORKER)
    task.requeue(reason="it is back", at=T0 + timedelta(minutes=5), actor=USER)
    return task


def test_a_requeue_gives_the_event_and_the_next_attempts_work_with_its_own_id():
    task = requeued_after("failed")
    events = task.collect_events()
    requeued = events[-1]
    assert isinstance(requeued, Task.Requeued)
    event_message, work_message = to_messages(requeued, 12, lambda _id, _version: task)
    event = decode_event(event_message)
    assert event_message.subject == "tasks.events.requeued"
    assert event.type == "io.taskexec.task.requeued.v1"
    assert event.taskversion == 4
    assert event.data == {
        "taskId": str(TASK_ID),
        "status": "PENDING",
        "attempt": 2,
        "reason": "it is back",
        "actor": {"id": "alice", "kind": "jwt"},
    }
    item = work_decoder.decode(work_message.body)
    assert (item.attempt, item.not_before, item.requeued) == (2, None, 4)
    assert work_message.subject == "tasks.work.medium"
    # Not the id attempt 2's work had, or would have had, before (JetStream would drop it).
    assert work_message.msg_id == f"{TASK_ID}:2:work:requeued-4"
    assert work_identity(work_message.msg_id) == (str(TASK_ID), 2)
    # Published again (lost, never delivered): still an id of its own.
    again = work_again(item, "again-1")
    assert again.msg_id == f"{TASK_ID}:2:work:requeued-4-again-1"
    assert work_identity(again.msg_id) == (str(TASK_ID), 2)


def test_a_requeued_cancelled_task_runs_its_first_attempt_and_a_manual_one_gets_no_work():
    task = requeued_after("cancelled")
    requeued = task.collect_events()[-1]
    _, work_message = to_messages(requeued, 3, lambda _id, _version: task)
    item = work_decoder.decode(work_message.body)
    assert (item.attempt, item.requeued) == (1, 3)  # the cancelled one never started
    assert work_for(task, 1).requeued == 3  # and so does the work published again

    manual = requeued_after("cancelled", "MANUAL")
    messages = to_messages(manual.collect_events()[-1], 3, lambda _id, _version: manual)
    assert [m.subject for m in messages] == ["tasks.events.requeued"]
