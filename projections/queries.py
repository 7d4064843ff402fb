"""Queries over the read models. Plain SQL; nothing here loads an aggregate."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from projections.db import Database


class TaskQueries:
    """Reads ``task_view``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, task_id: str) -> dict[str, Any] | None:
        """The task's row with JSON columns decoded, or None if there is none."""
        with self._db.read() as cur:
            row = cur.execute("SELECT * FROM task_view WHERE id = ?", (task_id,)).fetchone()
        if row is None:
            return None
        for column in ("input", "output", "error"):
            if row[column] is not None:
                row[column] = json.loads(row[column])
        row["duration_ms"] = duration_ms(row["start_time"], row["end_time"])
        return row


def duration_ms(start: str | None, end: str | None) -> int | None:
    if start is None or end is None:
        return None
    delta = _parse(end) - _parse(start)
    return round(delta.total_seconds() * 1000)


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
