"""Helpers for the read-side tests: a varied, reproducible event history, and the task
read model as the plain per-event algorithm computes it (the reference the batched
projection must match row for row)."""

from __future__ import annotations

import contextlib
import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import msgspec

from commands.service import TaskService
from domain.errors import DomainError
from domain.task import TIMEOUT, Task
from domain.values import ANONYMOUS, Actor, Priority, TaskStatus

# Times in several zones: events record the time they are given, zone included.
ZONES = (UTC, timezone(timedelta(hours=2)), timezone(-timedelta(hours=5, minutes=30)))
WORKER = Actor(id="w-1", kind="worker")
REQUEUEABLE = (TaskStatus.FAILED, TaskStatus.TIMED_OUT, TaskStatus.CANCELLED)


def make_history(service: TaskService, tasks: int = 60, seed: int = 7) -> list[UUID]:
    """``tasks`` tasks of the three built-in definitions, driven at random through every
    transition (start, complete, fail with and without retries, time-outs, cancels,
    MANUAL completions and failures), saved in groups of random size, so that one task's
    events are spread between other tasks' events. Returns the task ids."""
    rng = random.Random(seed)
    catalog = service.catalog
    definitions = [
        catalog.get(name) for name in ("calculate-order-total", "process-payment", "approve-refund")
    ]
    moment = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

    def now() -> datetime:
        nonlocal moment
        moment += timedelta(milliseconds=rng.randrange(1, 5000), microseconds=rng.randrange(1000))
        return moment.astimezone(rng.choice(ZONES))

    all_tasks: list[Task] = []
    for i in range(tasks):
        definition = rng.choice(definitions)
        assert definition is not None
        all_tasks.append(
            Task.submit(
                task_id=UUID(int=rng.getrandbits(128)),
                at=now(),
                actor=ANONYMOUS,
                definition=definition,
                input={"n": i, "text": "é\u2028\"'", "nested": [1, 2.5, None, {"a": True}]},
                workflow_instance_id=rng.choice([None, "wf-1", f"wf-{i}"]),
                priority=rng.choice(list(Priority)),
                timeout_ms=rng.choice([None, 1000, 90_000]),
                definition_revision=1,
            )
        )
    unsaved: list[Task] = list(all_tasks)
    active = all_tasks[: tasks * 4 // 5]  # the others stay as submitted
    for _ in range(tasks * 5):
        task = rng.choice(active)
        with contextlib.suppress(DomainError):  # not allowed in the task's state
            _act(task, rng, now())
        if task not in unsaved:
            unsaved.append(task)
        if rng.random() < 0.2:
            rng.shuffle(unsaved)
            service.save(*unsaved)
            unsaved = []
    service.save(*unsaved)
    return [task.id for task in all_tasks]


def _act(task: Task, rng: random.Random, at: datetime) -> None:
    """One random action that the task's state may or may not allow."""
    manual = task.task_type.value == "MANUAL"
    choice = rng.random()
    if task.status in REQUEUEABLE and choice < 0.3:
        task.requeue(reason=rng.choice([None, "retry"]), at=at, actor=ANONYMOUS)
    elif choice < 0.08:
        task.cancel(
            reason=rng.choice([None, "", "no longer needed"]), force=False, at=at, actor=ANONYMOUS
        )
    elif manual:
        if choice < 0.5:
            task.complete_manually(output={"approved": True}, at=at, actor=ANONYMOUS)
        else:
            task.fail_manually(error_type="REJECTED", error_message="no", at=at, actor=ANONYMOUS)
    elif task.status is TaskStatus.PENDING:
        task.start(attempt=task.attempt + 1, worker=rng.choice(["w-1", "w-2"]), at=at, actor=WORKER)
    elif choice < 0.5:
        task.complete(attempt=task.attempt, output={"total": choice}, at=at, actor=WORKER)
    else:
        task.fail(
            attempt=task.attempt,
            error_type=rng.choice(["E", TIMEOUT, "BAD"]),
            error_message=rng.choice(["boom", "took too long"]),
            at=at,
            actor=WORKER,
            retryable=rng.random() < 0.8,
        )


# -- the reference: the read model, one event at a time ------------------------------------

_json = msgspec.json.Encoder()


def reference_text(moment: datetime) -> str:
    if moment.utcoffset():
        moment = moment.astimezone(UTC)
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def reference_rows(events: list[tuple[int, Any]]) -> dict[str, dict[str, Any]]:
    """``task_view`` rows by id, as the per-event algorithm the projection had before it
    was batched computes them (times formatted as they come, one dict per task)."""
    rows: dict[str, dict[str, Any]] = {}
    for _, e in events:
        if not isinstance(e, Task.Event) or isinstance(e, Task.Created):
            continue
        task_id, at = str(e.originator_id), reference_text(e.timestamp)
        if isinstance(e, Task.Submitted):
            due = e.scheduled_at and reference_text(datetime.fromisoformat(e.scheduled_at))
            rows[task_id] = {
                "id": task_id,
                "definition_id": e.definition_id,
                "definition_version": e.definition_version,
                "definition_revision": e.definition_revision,
                "workflow_instance_id": e.workflow_instance_id,
                "timeout_ms": e.timeout_ms,
                "status": "PENDING",
                "type": e.task_type,
                "priority": e.priority,
                "input": _json.encode(e.input).decode(),
                "output": None,
                "error": None,
                "attempts": 0,
                "start_time": None,
                "end_time": None,
                "execution_environment": None,
                "cancel_reason": None,
                "next_attempt_at": due,
                "lease_deadline": None,
                "created_at": at,
                "updated_at": at,
                "version": e.originator_version,
                "error_type": None,
                "scheduled_at": due,
                "tenant": e.tenant,
            }
            continue
        row = rows[task_id]
        if isinstance(e, Task.Started):
            deadline = e.timestamp + timedelta(milliseconds=int(row["timeout_ms"]))
            row.update(
                status="RUNNING",
                attempts=e.attempt,
                start_time=at,
                end_time=None,
                execution_environment=e.worker,
                next_attempt_at=None,
                lease_deadline=reference_text(deadline),
            )
        elif isinstance(e, Task.Requeued):  # the last attempt's times stay
            row.update(status="PENDING", error=None, error_type=None, cancel_reason=None)
            row.update(lease_deadline=None, next_attempt_at=None)
        else:
            row.update(lease_deadline=None, next_attempt_at=None, end_time=at)
        if isinstance(e, Task.Completed):
            row.update(status="COMPLETED", output=_json.encode(e.output).decode())
        elif isinstance(e, Task.Failed | Task.RetryScheduled | Task.TimedOut):
            error_type = TIMEOUT if isinstance(e, Task.TimedOut) else e.error_type
            error = _json.encode({"type": error_type, "message": e.error_message}).decode()
            status = {Task.Failed: "FAILED", Task.RetryScheduled: "PENDING"}.get(
                type(e), "TIMED_OUT"
            )
            row.update(status=status, error=error, error_type=error_type)
            if isinstance(e, Task.RetryScheduled):
                row["next_attempt_at"] = reference_text(datetime.fromisoformat(e.retry_at))
        elif isinstance(e, Task.Cancelled):
            row.update(status="CANCELLED", cancel_reason=e.reason)
        row.update(updated_at=at, version=e.originator_version)
    return rows
