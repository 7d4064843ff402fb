"""What a submit must pass before its task exists: a known definition, an input small
enough to travel in the task's messages, and an input that matches the definition's
inputSchema, and a schedule within bounds (domain/schedule.py). A refusal is the
command's answer; nothing is recorded."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from uuid import UUID

import msgspec

from commands.catalog import DefinitionCatalog, as_details
from commands.errors import NotFound, TooLarge, ValidationFailed
from commands.messages import SubmitTask
from domain.schedule import InvalidSchedule, due_at
from domain.task import Task

_json = msgspec.json.Encoder()


def new_task(
    catalog: DefinitionCatalog,
    cmd: SubmitTask,
    task_id: UUID,
    request_hash: str | None,
    clock: Callable[[], datetime],
    max_input_bytes: int | None,
) -> Task:
    """A new task for ``cmd`` (not saved); NotFound, TooLarge or ValidationFailed if
    refused. ``max_input_bytes``: the largest input accepted as JSON (None: any)."""
    definition = catalog.get(cmd.definition_id)
    if definition is None:
        raise NotFound(
            f"task definition '{cmd.definition_id}' not found",
            {"field": "taskDefinitionId", "value": cmd.definition_id},
        )
    if max_input_bytes is not None:
        # The input travels in the task's messages, with its workflow instance id.
        size = len(_json.encode(cmd.input)) + len(cmd.workflow_instance_id or "")
        if size > max_input_bytes:
            raise TooLarge(
                f"input is {size} bytes as JSON; at most {max_input_bytes} are accepted",
                {"field": "input", "size": size, "limit": max_input_bytes},
            )
    violations = catalog.input_violations(definition.id, cmd.input)
    if violations:
        raise ValidationFailed(
            "input does not match the task definition's inputSchema",
            {"field": "input", "violations": as_details(violations)},
        )
    at = clock()
    try:
        due = due_at(cmd.scheduled_at, cmd.delay_seconds, at)
    except InvalidSchedule as exc:
        raise ValidationFailed(str(exc), {"field": exc.field, "issue": exc.issue}) from None
    return Task.submit(
        task_id=task_id,
        at=at,
        actor=cmd.actor,
        definition=definition,
        input=cmd.input,
        workflow_instance_id=cmd.workflow_instance_id,
        priority=cmd.priority,
        timeout_ms=cmd.timeout_ms,
        retry_policy=cmd.retry_policy,
        definition_revision=catalog.revision(definition.id),
        request_hash=request_hash,
        trace=cmd.trace,
        scheduled_at=due,
        tenant=cmd.tenant,
    )
