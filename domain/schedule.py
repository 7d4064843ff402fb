"""When a scheduled task's first attempt is due (``scheduledAt`` or ``delaySeconds`` in a
submit body: docs/api.md, "Scheduled tasks").

One rule for the API (a 400 naming the field, before anything is decided) and the write
side (the time recorded in the ``Submitted`` event): at most one of the two is given; a
time is RFC 3339 with its offset, any day of the calendar (the wait costs nothing, and a
task cancelled meanwhile has its schedule replaced: workers/bridge/outbox.py); a time in
the past means "now" (clocks differ, and a request sent again later must not be refused
for it); a delay is at most ``MAX_DELAY_SECONDS``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

from domain.errors import InvalidValue

MAX_DELAY_SECONDS = 10 * 365 * 86400  # a bound on the integer; further: give a time
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)
_EARLIEST = datetime.min.replace(tzinfo=UTC)
_LATEST = datetime.max.replace(tzinfo=UTC)


class InvalidSchedule(InvalidValue):
    """A schedule the service refuses; ``field`` names the request's field."""

    def __init__(self, field: str, issue: str) -> None:
        super().__init__(f"{field}: {issue}")
        self.field = field
        self.issue = issue


def parse_time(text: str) -> datetime:
    """An RFC 3339 date-time (``2026-12-24T18:00:00Z``, ``…+01:00``), in UTC. A leap
    second (``:60``) is the next second; a moment before year 1 or after 9999 in UTC, the first or
    last one Python has (a past time means now anyway). InvalidSchedule otherwise."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise InvalidSchedule("scheduledAt", "must be an RFC 3339 date-time with an offset")
    year, month, day, hour, minute, second = (int(part) for part in match.group(1, 2, 3, 4, 5, 6))
    micros = int((match.group(7) or "0")[:6].ljust(6, "0"))
    sign, off_h, off_m = match.group(9, 10, 11)
    try:
        offset = timedelta(hours=int(off_h), minutes=int(off_m)) if sign else timedelta()
        zone = timezone(-offset if sign == "-" else offset)
        if year == 0:
            return _EARLIEST
        moment = datetime(year, month, day, hour, minute, min(second, 59), micros, zone)
    except ValueError:
        raise InvalidSchedule("scheduledAt", "is not a day and time of the calendar") from None
    if second > 60:
        raise InvalidSchedule("scheduledAt", "is not a day and time of the calendar")
    try:
        return (moment + timedelta(seconds=second - min(second, 59))).astimezone(UTC)
    except OverflowError:
        return _EARLIEST if year == 1 else _LATEST


def due_at(
    scheduled_at: datetime | None, delay_seconds: int | None, now: datetime
) -> datetime | None:
    """The moment the first attempt is due (UTC, milliseconds), or None: not scheduled.
    InvalidSchedule when both are given, a time lacks its offset or a delay is out of
    range."""
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
    return _millis(scheduled_at)


def _millis(moment: datetime) -> datetime:
    """In UTC, to the millisecond: the precision every time of the API has."""
    moment = moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)
