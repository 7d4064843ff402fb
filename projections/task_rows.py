"""What each task event does to its read-model row, in memory.

A row is a list in ``COLUMNS`` order (the order of the table and of the INSERT), so a
batch is written without building a dict or a tuple per row. Events are applied to the
task's row one after the other, but timestamps are kept as datetimes until the batch is
written: a task whose Submitted, Started and Completed arrive in one batch (the common
case when catching up) formats only the values its final row holds, once each
(``finish``), instead of once per event (a Started's lease deadline, say, which the
Completed clears again). Each handler raises on bad data, so the caller can name the
notification that failed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import msgspec

from domain.task import TIMEOUT, Task

COLUMNS = (
    "id",
    "definition_id",
    "definition_version",
    "definition_revision",
    "workflow_instance_id",
    "timeout_ms",
    "status",
    "type",
    "priority",
    "input",
    "output",
    "error",
    "attempts",
    "start_time",
    "end_time",
    "execution_environment",
    "cancel_reason",
    "next_attempt_at",
    "lease_deadline",
    "created_at",
    "updated_at",
    "version",
    # Added later (projections/task_upgrade.py adds it to older tables): the type of
    # ``error``, for lists of the failures of one kind (an index, which JSON text lacks).
    "error_type",
    # Added later too: a scheduled task's time (docs/api.md, "Scheduled tasks"), else NULL.
    "scheduled_at",
    # Added later too: the submitter's tenant (docs/security.md, "Tenants"), else NULL.
    "tenant",
)
# Status up to the tenant; the submission's fields (the tenant too) never change.
MUTABLE = COLUMNS[6 : COLUMNS.index("tenant")]
NULLABLE = (  # the columns without NOT NULL (see TaskProjection.ddl)
    "workflow_instance_id",
    "output",
    "error",
    "start_time",
    "end_time",
    "execution_environment",
    "cancel_reason",
    "next_attempt_at",
    "lease_deadline",
    "error_type",
    "scheduled_at",
    "tenant",
)
# Where each column is in a row.
ID = COLUMNS.index("id")
TIMEOUT_MS = COLUMNS.index("timeout_ms")
STATUS = COLUMNS.index("status")
TYPE = COLUMNS.index("type")
OUTPUT = COLUMNS.index("output")
ERROR = COLUMNS.index("error")
ERROR_TYPE = COLUMNS.index("error_type")
ATTEMPTS = COLUMNS.index("attempts")
START = COLUMNS.index("start_time")
END = COLUMNS.index("end_time")
WORKER = COLUMNS.index("execution_environment")
CANCEL = COLUMNS.index("cancel_reason")
NEXT = COLUMNS.index("next_attempt_at")
LEASE = COLUMNS.index("lease_deadline")
CREATED = COLUMNS.index("created_at")
UPDATED = COLUMNS.index("updated_at")
VERSION = COLUMNS.index("version")
SCHEDULED = COLUMNS.index("scheduled_at")
TENANT = COLUMNS.index("tenant")
# Times: text in the table, UTC datetimes while a batch is applied (``finish``).
OTHER_TIMES = (START, END, NEXT, LEASE, CREATED, SCHEDULED)  # and UPDATED

Row = list[Any]
Rows = dict[str, Row]
Handler = Callable[[Row, Any], None]

_json = msgspec.json.Encoder()


def timestamp_text(moment: datetime) -> str:
    """Fixed-width UTC text, so that text order is time order."""
    if moment.tzinfo is UTC:
        return utc_text(moment)
    if moment.utcoffset():
        moment = moment.astimezone(UTC)
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


_TWO_DIGITS = tuple(f"{n:02d}" for n in range(100))


def utc_text(moment: datetime, two: tuple[str, ...] = _TWO_DIGITS) -> str:
    """``timestamp_text`` of a UTC time (every event's time as read from the store).

    Put together from the fields: ``isoformat`` goes through a printf-style formatter
    and cost about a tenth of all the work of projecting an event (callgrind)."""
    year = moment.year
    if year < 1000:  # isoformat pads the year to four digits
        return moment.isoformat(timespec="microseconds")[:26] + "Z"
    return (
        f"{year}-{two[moment.month]}-{two[moment.day]}T{two[moment.hour]}:"
        f"{two[moment.minute]}:{two[moment.second]}.{str(1_000_000 + moment.microsecond)[1:]}Z"
    )


def uuid_text(number: int) -> str:
    """``str(UUID(int=number))``, without a UUID: a fifth of the work of applying an
    event went into ``UUID.__str__``."""
    hex = f"{number:032x}"
    return f"{hex[:8]}-{hex[8:12]}-{hex[12:16]}-{hex[16:20]}-{hex[20:]}"


def free_text(value: str | None) -> str | None:
    """Free text (a workflow id, a worker's name, a cancel reason) as the read model keeps
    it: PostgreSQL's text cannot hold U+0000, and one such character, sent by any caller
    allowed to cancel, made the batch fail and stopped the projection. It becomes U+FFFD
    on both backends; the event store keeps the text as it came."""
    if value is not None and "\x00" in value:
        return value.replace("\x00", "\ufffd")
    return value


def json_text(value: Any) -> str:
    return _json.encode(value).decode()


def _time(moment: datetime) -> datetime | str:
    """A UTC time as it is, formatted at the end (``finish``, which cannot fail then);
    any other time at once, so that a time that cannot be formatted names its event."""
    return moment if moment.tzinfo is UTC else timestamp_text(moment)


def submitted(task_id: str, e: Any) -> Row:
    """The row of a new task (its times still datetimes, see ``finish``); a scheduled
    one's next attempt is due at its scheduled time."""
    at = _time(e.timestamp)
    due = _time(datetime.fromisoformat(e.scheduled_at)) if e.scheduled_at is not None else None
    return [
        task_id,
        e.definition_id,
        e.definition_version,
        e.definition_revision,
        free_text(e.workflow_instance_id),
        e.timeout_ms,
        "PENDING",
        e.task_type,
        e.priority,
        json_text(e.input),
        None,
        None,
        0,
        None,
        None,
        None,
        None,
        due,
        None,
        at,
        at,
        e.originator_version,
        None,
        due,
        e.tenant,
    ]


@lru_cache(maxsize=1024)
def _timeout(milliseconds: int) -> timedelta:
    """Tasks share a handful of timeouts: made once each, not once per Started."""
    return timedelta(milliseconds=milliseconds)


def _started(row: Row, e: Any) -> None:
    deadline = _time(e.timestamp + _timeout(int(row[TIMEOUT_MS])))
    at = _time(e.timestamp)
    row[STATUS] = "RUNNING"
    row[ATTEMPTS] = e.attempt
    row[START] = at
    row[END] = None
    row[WORKER] = free_text(e.worker)
    row[NEXT] = None
    row[LEASE] = deadline
    row[UPDATED] = at
    row[VERSION] = e.originator_version


def _ended(row: Row, e: Any, status: str) -> None:
    """What every event but Started does: the attempt's lease and retry time go."""
    row[STATUS] = status
    row[LEASE] = None
    row[NEXT] = None
    row[END] = row[UPDATED] = _time(e.timestamp)
    row[VERSION] = e.originator_version


def _completed(row: Row, e: Any) -> None:
    output = json_text(e.output)
    _ended(row, e, "COMPLETED")
    row[OUTPUT] = output


def _error(row: Row, error_type: str, message: str, traceback: str | None = None) -> None:
    """The last failure (its traceback too, when there is one: as the aggregate's
    ``error``), and its type apart (free text: a NUL becomes U+FFFD). In the JSON text a
    NUL is an escape (``\\u0000``), which PostgreSQL's text holds."""
    error = {"type": error_type, "message": message}
    if traceback is not None:
        error["traceback"] = traceback
    row[ERROR] = json_text(error)
    row[ERROR_TYPE] = free_text(error_type)


def _failed(row: Row, e: Any) -> None:
    _error(row, e.error_type, e.error_message, e.traceback)
    _ended(row, e, "FAILED")


def _retry_scheduled(row: Row, e: Any) -> None:
    retry_at = _time(datetime.fromisoformat(e.retry_at))
    _error(row, e.error_type, e.error_message, e.traceback)
    _ended(row, e, "PENDING")
    row[NEXT] = retry_at


def _timed_out(row: Row, e: Any) -> None:
    _error(row, TIMEOUT, e.error_message)
    _ended(row, e, "TIMED_OUT")


def _cancelled(row: Row, e: Any) -> None:
    reason = free_text(e.reason)
    _ended(row, e, "CANCELLED")
    row[CANCEL] = reason


def _requeued(row: Row, e: Any) -> None:
    """PENDING again (docs/execution.md): the last failure and the cancel reason go, the
    last attempt's times and worker stay until the next attempt starts."""
    row[STATUS] = "PENDING"
    row[ERROR] = row[ERROR_TYPE] = row[CANCEL] = None
    row[NEXT] = row[LEASE] = None
    row[UPDATED] = _time(e.timestamp)
    row[VERSION] = e.originator_version


# Task.Submitted is not here: it makes a row rather than changing one (``submitted``).
CHANGES: dict[type[Any], Handler] = {
    Task.Started: _started,
    Task.Completed: _completed,
    Task.Failed: _failed,
    Task.RetryScheduled: _retry_scheduled,
    Task.TimedOut: _timed_out,
    Task.Cancelled: _cancelled,
    Task.Requeued: _requeued,
}


def finish(row: Row) -> Row:
    """The row as stored: every time as text. ``updated_at`` is the time of the task's
    last event, which one other column often shares: that one is formatted once."""
    updated = row[UPDATED]
    text = ""
    if type(updated) is not str:
        text = row[UPDATED] = utc_text(updated)
    for index in OTHER_TIMES:
        value = row[index]
        if value is None or type(value) is str:
            continue
        row[index] = text if value is updated else utc_text(value)
    return row
