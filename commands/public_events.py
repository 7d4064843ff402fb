"""The public form of stored events, shared by the NATS events, history and export.

Names and the status after each task event (``PUBLIC_TYPES``: a persisted contract),
stable event ids, RFC 3339 times, and each event's fields in the REST API's camelCase.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from hashlib import sha1
from typing import Any
from uuid import UUID

from domain.apikey import ApiKey
from domain.definition_record import DefinitionRecord
from domain.task import Task

# Stored event class -> (public type name, status after it). A persisted contract.
PUBLIC_TYPES: dict[type[Any], tuple[str, str]] = {
    Task.Submitted: ("submitted", "PENDING"),
    Task.Started: ("started", "RUNNING"),
    Task.Completed: ("completed", "COMPLETED"),
    Task.Failed: ("failed", "FAILED"),
    Task.Cancelled: ("cancelled", "CANCELLED"),
    Task.RetryScheduled: ("retry_scheduled", "PENDING"),
    Task.TimedOut: ("timed_out", "TIMED_OUT"),
    Task.Requeued: ("requeued", "PENDING"),
}


# An RFC 4122 variant digit for each hex digit of the hash (its top bits set to 10).
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def event_id(task_id: UUID, version: int) -> str:
    """Stable id of a task's n-th event: the same on every relay, forever.

    ``str(uuid5(task_id, str(version)))``, computed without the two UUID objects (a
    third of the cost, three times per task in the relay): the SHA-1 in hex, with the
    version digit set to 5 and the variant bits to RFC 4122's.
    """
    h = sha1(task_id.bytes + str(version).encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


def rfc3339(moment: datetime) -> str:
    if moment.tzinfo is UTC:
        return _utc_rfc3339(moment)
    text = moment.isoformat(timespec="milliseconds")
    return text[:-6] + "Z" if text.endswith("+00:00") else text


@lru_cache(maxsize=64)  # the events of a submitted batch share their moment
def _utc_rfc3339(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")[:-6] + "Z"


def event_data(event: Any) -> dict[str, Any]:
    """The event's own fields in the REST API's camelCase vocabulary."""
    if isinstance(event, Task.Submitted):
        submitted = {
            "taskDefinitionId": event.definition_id,
            "definitionVersion": event.definition_version,
            "workflowInstanceId": event.workflow_instance_id,
            "type": event.task_type,
            "priority": event.priority,
            "input": event.input,
            "timeout": event.timeout_ms,
        }
        if event.scheduled_at is not None:  # a scheduled task (absent otherwise)
            submitted["scheduledAt"] = rfc3339(datetime.fromisoformat(event.scheduled_at))
        if event.tenant is not None:  # the submitter's tenant (absent without one)
            submitted["tenant"] = event.tenant
        return submitted
    if isinstance(event, Task.Started):
        return {"attempt": event.attempt, "executionEnvironment": event.worker}
    if isinstance(event, Task.Completed):
        return {"attempt": event.attempt, "output": event.output}
    if isinstance(event, Task.Failed):
        data: dict[str, Any] = {
            "attempt": event.attempt,
            "error": {"type": event.error_type, "message": event.error_message},
        }
        if event.output is not None:
            data["output"] = event.output
        if event.traceback is not None:
            data["traceback"] = event.traceback
        return data
    if isinstance(event, Task.RetryScheduled):
        data = {
            "attempt": event.attempt,
            "error": {"type": event.error_type, "message": event.error_message},
            "nextAttemptAt": rfc3339(datetime.fromisoformat(event.retry_at)),
        }
        if event.traceback is not None:
            data["traceback"] = event.traceback
        return data
    if isinstance(event, Task.TimedOut):
        return {
            "attempt": event.attempt,
            "error": {"type": "TIMEOUT", "message": event.error_message},
        }
    if isinstance(event, Task.Cancelled):
        return {"reason": event.reason, "force": event.force}
    if isinstance(event, Task.Requeued):
        return {"attempt": event.attempt, "reason": event.reason}
    return {}


# What every event carries besides its own fields; not repeated in generic ``data``.
_ENVELOPE = frozenset(
    {
        "originator_id",
        "originator_version",
        "timestamp",
        "originator_topic",
        "actor",
        "prev_hash",
        "hash",
    }
)


def aggregate_kind(event: Any) -> str:
    """``task``, ``definition`` or ``apikey`` (else the topic's second part)."""
    if isinstance(event, Task.Event):
        return "task"
    if isinstance(event, DefinitionRecord.Event):
        return "definition"
    if isinstance(event, ApiKey.Event):
        return "apikey"
    return topic_parts(_topic(event))[0]


def topic_parts(topic: str) -> tuple[str, str]:
    """``taskexec.task.completed.v1`` -> (``task``, ``completed``)."""
    parts = topic.split(".")
    if len(parts) >= 4 and parts[0] == "taskexec":
        return parts[1], ".".join(parts[2:-1])
    return "unknown", topic


def public_type(event: Any) -> str:
    """The public name of an event: ``PUBLIC_TYPES``' name, else the topic's."""
    public = PUBLIC_TYPES.get(type(event))
    if public is not None:
        return public[0]
    return topic_parts(_topic(event))[1]


def status_after(event: Any) -> str | None:
    public = PUBLIC_TYPES.get(type(event))
    return public[1] if public is not None else None


def public_data(event: Any) -> dict[str, Any]:
    """The event's fields in the public camelCase vocabulary (the NATS events' ``data``)."""
    if type(event) in PUBLIC_TYPES:
        return event_data(event)
    return {camel(key): value for key, value in vars(event).items() if key not in _ENVELOPE}


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _topic(event: Any) -> str:
    topic = getattr(type(event), "TOPIC", None)
    return topic if isinstance(topic, str) else f"{type(event).__module__}:{type(event).__name__}"
