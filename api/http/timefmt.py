"""Times on the wire: RFC 3339, UTC, milliseconds (``2023-07-15T14:30:00.123Z``)."""

from __future__ import annotations

from datetime import datetime


def api_time(value: str | datetime) -> str:
    """From a read-model text timestamp (microseconds, ``Z``) or an aware datetime."""
    if isinstance(value, str):
        return value[:23] + "Z"
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f")[:23] + "Z"
