"""The outbox: the ordered notification log, read as messages for NATS.

The relay (workers/bridge/relay.py) publishes what ``read`` returns and then calls
``mark_published``; the position is a tracking row in the event store, so the
relay resumes where it stopped. Delivery is at-least-once; every message carries a
stable ``Nats-Msg-Id`` so JetStream drops the duplicates within its window.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast
from uuid import UUID

from eventsourcing.persistence import Tracking
from msgspec.structs import replace

from commands.leadership import Leadership
from commands.public_events import PUBLIC_TYPES, event_data, event_id, rfc3339
from commands.service import TaskService
from domain.executor_pool import DEFAULT_POOL
from domain.task import UNPUBLISHABLE, Task
from domain.values import TaskType
from workers import tracing
from workers.bridge.trace_contexts import TraceContexts, tracing_extension
from workers.limit_subjects import item_subject
from workers.protocol import (
    EVENTS_SUBJECT_PREFIX,
    CloudEvent,
    Outgoing,
    WorkItem,
    WorkLimit,
    cancel_subject,
    encoder,
    schedule_headers,
    schedule_subject,
    work_identity,
    work_msg_id,
)

log = logging.getLogger(__name__)


RELAY_TRACKING = "relay"


SOURCE = "/taskexec"


EVENT_TYPE_PREFIX = "io.taskexec.task."


@dataclass(frozen=True)
class OutboxBatch:
    last_position: int
    messages: list[Outgoing]


class Outbox:
    """Reads the notification log after the relay's position and maps it to messages.

    ``lock``: held by the one replica whose relay publishes (commands/leadership.py);
    without one, this relay is the only one."""

    def __init__(self, service: TaskService, lock: Leadership | None = None) -> None:
        self._service = service
        self._lock = lock
        self._traces = TraceContexts(self._submitted_trace) if tracing.active() else None

    def lead(self) -> bool:
        return self._lock is None or self._lock.acquire()

    def step_down(self) -> None:
        if self._lock is not None:
            self._lock.release()

    def position(self) -> int:
        return self._service.process_recorder.max_tracking_id(RELAY_TRACKING) or 0

    def read(self, after: int, limit: int = 500) -> OutboxBatch | None:
        events = self._service.follow_log(after, limit, reader="relay")
        if not events:
            return None
        messages: list[Outgoing] = []
        for position, event in events:
            messages.extend(to_messages(event, position, self._task_at, self._traces))
        return OutboxBatch(last_position=events[-1][0], messages=messages)

    def _task_at(self, task_id: UUID, version: int) -> Task:
        task: Any = self._service.repository.get(task_id, version=version)
        return cast(Task, task)

    def _submitted_trace(self, task_id: UUID) -> dict[str, str] | None:
        return self._task_at(task_id, 1).trace

    def mark_published(self, position: int) -> None:
        self._service.process_recorder.insert_tracking(Tracking(RELAY_TRACKING, position))

    def set_aside(self, messages: Sequence[Outgoing], limit: int) -> None:
        """Messages larger than NATS takes: never published. A task whose work is among
        them ends FAILED (``UNPUBLISHABLE``), so that nothing waits for work that cannot
        come; the others (an event with a huge output, say) are only logged."""
        for message in messages:
            log.error(
                "relay: %s (%s) is %d bytes, over NATS's %d: set aside",
                message.subject,
                message.msg_id,
                len(message.body),
                limit,
            )
            identity = work_identity(message.msg_id)
            if identity is not None:
                task_id, attempt = identity
                reason = f"its work is {len(message.body)} bytes; NATS takes at most {limit}"
                self._service.give_up(UUID(task_id), attempt, UNPUBLISHABLE, reason)


def to_messages(
    event: Any,
    position: int,
    task_at: Callable[[UUID, int], Task] | None = None,
    traces: TraceContexts | None = None,
) -> list[Outgoing]:
    """The public lifecycle event; for a new attempt (submitted, retry scheduled,
    requeued), the work item; for a cancel, the cancel marker workers check before they
    start. ``task_at`` loads the task as of an event (a retry's or a requeued task's work
    item needs the submission's fields); ``traces`` (tracing on) finds the task's trace
    context for every event of it, the Submitted event's own otherwise."""
    public = PUBLIC_TYPES.get(type(event))
    if public is None:
        return []
    name, status = public
    task_id = str(event.originator_id)
    trace = traces.of(event) if traces is not None else getattr(event, "trace", None)
    cloud_event = CloudEvent(
        id=event_id(event.originator_id, event.originator_version),
        source=SOURCE,
        type=f"{EVENT_TYPE_PREFIX}{name}.v1",
        subject=task_id,
        time=rfc3339(event.timestamp),
        data={"taskId": task_id, "status": status, **event_data(event), "actor": event.actor},
        taskversion=event.originator_version,
        position=position,
        eventhash=getattr(event, "hash", None),
        **tracing_extension(trace),
    )
    messages = [
        Outgoing(
            subject=f"{EVENTS_SUBJECT_PREFIX}{name}",
            msg_id=cloud_event.id,
            body=encoder.encode(cloud_event),
            trace=trace,
        )
    ]
    if isinstance(event, Task.Submitted) and event.task_type != TaskType.MANUAL:
        due = _due(event)
        work = _work(
            WorkItem(
                task_id=task_id,
                attempt=1,
                task_type=event.task_type,
                definition_id=event.definition_id,
                input=event.input,
                timeout_ms=event.timeout_ms,
                priority=event.priority,
                not_before=due,
                trace=event.trace,
                **_execution(event.execution),
            ),
            current=True,  # the definition's limit as it is now
        )
        messages.append(_scheduled(work, task_id, due) if due else work)
    elif isinstance(event, Task.RetryScheduled) and task_at is not None:
        task = task_at(event.originator_id, event.originator_version)
        messages.append(_work(work_for(task, event.attempt + 1, not_before=event.retry_at)))
    elif isinstance(event, Task.Requeued) and task_at is not None:
        task = task_at(event.originator_id, event.originator_version)
        if task.task_type is not TaskType.MANUAL:  # a MANUAL task waits for a person again
            messages.append(_work(work_for(task, event.attempt)))
    elif isinstance(event, Task.Cancelled):
        # ``taskversion``: a requeue after it (a higher version) outlives the marker.
        version = event.originator_version
        marker = {"force": event.force, "at": rfc3339(event.timestamp), "taskversion": version}
        messages.append(
            Outgoing(
                subject=cancel_subject(task_id),
                msg_id=f"{task_id}:cancelled:{version}",
                body=encoder.encode(marker),
            )
        )
        if task_at is not None:
            messages.extend(_unscheduled(task_at(event.originator_id, version), event))
    return messages


def _unscheduled(task: Task, cancel: Task.Cancelled) -> list[Outgoing]:
    """A task cancelled while its schedule waits: the schedule is replaced by one due a
    second after the cancel (one schedule per subject), whose work the workers drop as
    cancelled (its marker is published just before). So no schedule outlives its cancel
    marker, however far ahead it was, and none is left in the stream."""
    due = task.scheduled_at
    if due is None or task.attempt or task.requeued_version or due <= cancel.timestamp:
        return []
    work = _work(work_for(task, 1), f"cancelled-{cancel.originator_version}")
    fire = rfc3339(cancel.timestamp + timedelta(seconds=1))
    return [_scheduled(work, str(task.id), fire)]


def _due(event: Task.Submitted) -> str | None:
    """A scheduled task's time (RFC 3339, UTC) if it is after the submit; else None."""
    if event.scheduled_at is None:
        return None
    due = datetime.fromisoformat(event.scheduled_at)
    return rfc3339(due) if due > event.timestamp else None


def _scheduled(work: Outgoing, task_id: str, due: str) -> Outgoing:
    """``work`` held by JetStream until ``due``, then published to its own subject (its
    pool's queue of its priority, or its limited definition's: a message schedule):
    nothing of ours runs while it waits. Its ``notBefore`` makes a worker hand it back
    should it come early (published again by lost work, say)."""
    return replace(
        work,
        subject=schedule_subject(task_id),
        headers=schedule_headers(due, "", target=work.subject),
    )


def work_for(task: Task, attempt: int, not_before: str | None = None) -> WorkItem:
    """The work item of ``task``'s ``attempt`` (a retry's, a requeued task's, or one
    published again)."""
    return WorkItem(
        task_id=str(task.id),
        attempt=attempt,
        task_type=task.task_type.value,
        definition_id=task.definition_id,
        input=task.input,
        timeout_ms=task.timeout_ms,
        priority=task.priority.value,
        not_before=not_before,
        requeued=task.requeued_version,
        trace=task.trace,
        **_execution(task.execution),
    )


def _execution(execution: dict[str, Any]) -> dict[str, Any]:
    """A work item's fields from the task's ``execution`` (domain/task_rules.py
    from_definition): what runs it, and an INTEGRATION call's ``auth``."""
    return {
        "handler": execution.get("handler"),
        "endpoint": execution.get("endpoint"),
        "isolation": execution.get("isolation", "thread"),
        "auth": execution.get("auth"),
        "executor": execution.get("executor"),
        "cpu": execution.get("cpu"),
        "memory": execution.get("memory"),
        "security_level": execution.get("securityLevel", "LOW"),
        "allow_env": execution.get("allowEnv"),
        "max_concurrency": execution.get("maxConcurrency"),
    }


def _work(item: WorkItem, again: str = "", current: bool = False) -> Outgoing:
    """The message of ``item``; ``current``: a limit it carries is its definition's now."""
    limit = None
    if item.max_concurrency is not None:
        pool = item.executor or DEFAULT_POOL
        limit = WorkLimit(pool, item.definition_id, item.max_concurrency, current)
    return Outgoing(
        subject=item_subject(item),
        pool=None if item.executor == DEFAULT_POOL else item.executor,
        msg_id=work_msg_id(item.task_id, item.attempt, again, item.requeued),
        body=encoder.encode(item),
        trace=item.trace,
        limit=limit,
    )


def work_again(item: WorkItem, again: str) -> Outgoing:
    """``item`` published once more (its first message was lost or never delivered):
    another ``Nats-Msg-Id``, or JetStream would drop it as a duplicate."""
    return _work(item, again)
