"""Tasks that wait with nothing moving them on (their work lost, say).

A PENDING task (not MANUAL) whose next attempt has been due, and which has not changed,
since before a moment; a RUNNING one whose attempt should have ended (start + timeout)
before it. ``serve`` publishes the work of the first kind again (workers/bridge/lost_work.py)
and fails the attempts of the second (the lost-attempt sweep); ``taskexec verify``
reports both, when they are older than its bound, as findings.
"""

from __future__ import annotations

from projections.db import Cursor
from projections.sql import reads


def stranded(
    cur: Cursor, g: int, before: str, limit: int, running: bool = False
) -> list[tuple[str, str, str, str]]:
    """(task id, status, priority, updated_at) of stranded tasks, oldest first; RUNNING
    ones too if ``running``. ``before``: fixed-width UTC text."""
    params = (before, before, before, limit) if running else (before, before, limit)
    rows = cur.execute(reads.stranded_tasks(g, running), params).fetchall()
    return [(r["id"], r["status"], r["priority"], r["updated_at"]) for r in rows]
