"""Tasks that wait with nothing moving them on (their work lost, say).

A PENDING task (not MANUAL) whose next attempt has been due, and which has not changed,
since before a moment; a RUNNING one whose attempt should have ended (start + timeout)
before it. ``serve`` publishes the work of the first kind again (workers/bridge/lost_work.py)
and fails the attempts of the second (the lost-attempt sweep); ``taskexec verify``
reports both, when they are older than its bound, as findings.
"""

from __future__ import annotations

from projections.db import Cursor


def stranded(
    cur: Cursor, g: int, before: str, limit: int, running: bool = False
) -> list[tuple[str, str, str, str]]:
    """(task id, status, priority, updated_at) of stranded tasks, oldest first; RUNNING
    ones too if ``running``. ``before``: fixed-width UTC text."""
    running_clause = "OR (status = 'RUNNING' AND lease_deadline < ?)" if running else ""
    params: tuple[object, ...] = (
        (before, before, before, limit)
        if running
        else (
            before,
            before,
            limit,
        )
    )
    rows = cur.execute(
        f"SELECT id, status, priority, updated_at FROM task_view_g{g} WHERE type <> 'MANUAL' "
        "AND ((status = 'PENDING' AND updated_at < ? "
        f"AND (next_attempt_at IS NULL OR next_attempt_at < ?)) {running_clause}) "
        "ORDER BY updated_at LIMIT ?",
        params,
    ).fetchall()
    return [(r["id"], r["status"], r["priority"], r["updated_at"]) for r in rows]
