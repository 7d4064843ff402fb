"""Submitting tasks beyond one plain POST: the Idempotency-Key header and bulk submission.

Bulk: ``POST /api/v1/tasks/bulk`` with ``{"tasks": [<submit body + optional
idempotencyKey>, …]}`` (1 to ``MAX_BULK``). A body that does not parse is a 400 and records
nothing. Otherwise every item gets its own result, in order: ``201`` and the task (as the
single submit answers), ``200`` and the original task for an idempotent retry, or its own
error in the spec's envelope (``404`` unknown definition, ``422`` invalid input or a reused
key). All accepted items are recorded in ONE transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

from litestar.exceptions import ValidationException
from litestar.params import HeaderParameter
from msgspec import Meta, Struct

from api.http.errors import COMMAND_STATUS
from api.http.schemas import ErrorBody, SubmitTaskRequest, SubmitTaskResponse
from commands.errors import CommandError
from commands.messages import Outcome
from domain.schedule import InvalidSchedule, due_at, parse_time
from domain.values import TaskStatus

MAX_BULK = 500
_KEY_PATTERN = r"^[\x21-\x7e]+$"  # visible ASCII

IdempotencyKey = Annotated[str, Meta(min_length=1, max_length=255, pattern=_KEY_PATTERN)]
IdempotencyKeyHeader = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=_KEY_PATTERN,
        description=(
            "Retry-safe submission: the same key and body return the original task (200); "
            "the same key with another body is 422. Keys are scoped to the caller."
        ),
    ),
]


class BulkSubmitItem(SubmitTaskRequest, rename="camel", forbid_unknown_fields=True):
    idempotency_key: IdempotencyKey | None = None


class BulkSubmitRequest(Struct, rename="camel", forbid_unknown_fields=True):
    tasks: Annotated[list[BulkSubmitItem], Meta(min_length=1, max_length=MAX_BULK)]


class BulkItemResult(Struct, rename="camel", omit_defaults=True):
    index: int
    status_code: int
    task: SubmitTaskResponse | None = None
    error: ErrorBody | None = None


class BulkSubmitResponse(Struct, rename="camel"):
    items: list[BulkItemResult]
    created: int
    replayed: int
    failed: int


def check_schedule(body: SubmitTaskRequest, field: str = "") -> datetime | None:
    """The body's ``scheduledAt`` as a time; a 400 naming the field (``field``: the item's
    place in a bulk body) for a schedule the write side would refuse (domain/schedule.py):
    not RFC 3339, or both fields given."""
    if body.scheduled_at is None and body.delay_seconds is None:
        return None
    try:
        at = parse_time(body.scheduled_at) if body.scheduled_at is not None else None
        due_at(at, body.delay_seconds, datetime.now(UTC))
    except InvalidSchedule as exc:
        problem = {"key": f"{field}{exc.field}", "message": exc.issue, "source": "body"}
        raise ValidationException("Invalid request", extra=[problem]) from None
    return at


def submit_response(outcome: Outcome, api_time: Callable[[datetime], str]) -> SubmitTaskResponse:
    return SubmitTaskResponse(
        id=str(outcome.task_id),
        status=TaskStatus(outcome.status),
        created_at=api_time(outcome.created_at),
    )


def bulk_response(
    results: Sequence[Outcome | CommandError], api_time: Callable[[Any], str]
) -> BulkSubmitResponse:
    items: list[BulkItemResult] = []
    for index, result in enumerate(results):
        if isinstance(result, Outcome):
            items.append(
                BulkItemResult(
                    index=index,
                    status_code=200 if result.replayed else 201,
                    task=submit_response(result, api_time),
                )
            )
        else:
            items.append(
                BulkItemResult(
                    index=index,
                    status_code=COMMAND_STATUS.get(type(result), 500),
                    error=ErrorBody(
                        code=result.code, message=result.message, details=result.details
                    ),
                )
            )
    created = sum(1 for r in results if isinstance(r, Outcome) and not r.replayed)
    replayed = sum(1 for r in results if isinstance(r, Outcome) and r.replayed)
    return BulkSubmitResponse(
        items=items, created=created, replayed=replayed, failed=len(results) - created - replayed
    )
