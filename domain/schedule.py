"""When a scheduled task's first attempt is due (``scheduledAt`` or ``delaySeconds`` in a
submit body: docs/api.md, "Scheduled tasks").

One rule for the API (a 400 naming the field, before anything is decided) and the write
side (the time recorded in the ``Submitted`` event): at most one of the two is given; a
time is at most ``MAX_AHEAD`` ahead, because a cancel marker (which keeps the work of a
task cancelled while it waits from running) lives that long; a time in the past means
"now" (clocks differ, and a retried request must not be refused for its own delay).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domain.errors import InvalidValue

MAX_AHEAD = timedelta(days=30)  # = workers/streams.py CANCEL_MARKER_TTL_S
MAX_DELAY_SECONDS = int(MAX_AHEAD.total_seconds())


class InvalidSchedule(InvalidValue):
    """A schedule the service refuses; ``field`` names the request's field."""

    def __init__(self, field: str, issue: str) -> None:
        super().__init__(f"{field}: {issue}")
        self.field = field
        self.issue = issue


def due_at(
    scheduled_at: datetime | None, delay_seconds: int | None, now: datetime
) -> datetime | None:
    """The moment the first attempt is due (UTC, milliseconds), or None: not scheduled.
    InvalidSchedule when both are given, a time lacks its offset or is too far ahead."""
    if scheduled_at is not None and delay_seconds is not None:
        raise InvalidSchedule("scheduledAt", "give scheduledAt or delaySeconds, not both")
    if delay_seconds is not None:
        if not 0 <= delay_seconds <= MAX_DELAY_SECONDS:
            raise InvalidSchedule("delaySeconds", f"must be 0 to {MAX_DELAY_SECONDS}")
        return _millis(now + timedelta(seconds=delay_seconds))
    if scheduled_at is None:
        return None
    if scheduled_at.tzinfo is None:
        raise InvalidSchedule("scheduledAt", "must be RFC 3339 with an offset (Z or ±hh:mm)")
    if scheduled_at - now > MAX_AHEAD:
        raise InvalidSchedule("scheduledAt", "must be at most 30 days ahead")
    return _millis(scheduled_at)


def _millis(moment: datetime) -> datetime:
    """In UTC, to the millisecond: the precision every time of the API has."""
    moment = moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)
