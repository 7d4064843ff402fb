"""Finished tasks chosen by status, definition, error type and the time they finished:
what ``taskexec tasks retry`` requeues, read from the task read model.

Pages follow (created_at, id) from the oldest, each after the last task of the one before
(never an offset), so that tasks leaving the selection meanwhile (requeued by this very
command) neither shift a page nor are read twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from projections.db import Cursor
from projections.queries import Generation
from projections.sql import equals, one_of, reads, statement, where
from projections.task_rows import free_text


@dataclass(frozen=True)
class Selection:
    """Which finished tasks: statuses, and optionally a definition, the type of the last
    failure, and when they finished (their last event, ``updated_at``: fixed-width UTC
    text, ``since`` included, ``until`` not)."""

    statuses: tuple[str, ...]
    definition_id: str | None = None
    error_type: str | None = None
    since: str | None = None
    until: str | None = None

    def conditions(self) -> tuple[list[str], list[Any]]:
        """SQL conditions and their parameters."""
        conditions = [one_of("status", len(self.statuses))]
        params: list[Any] = list(self.statuses)
        for condition, value in (
            (equals("definition_id"), free_text(self.definition_id)),
            (equals("error_type"), free_text(self.error_type)),
            (statement("updated_since"), self.since),
            (statement("updated_before"), self.until),
        ):
            if value is not None:
                conditions.append(condition)
                params.append(value)
        return conditions, params


class FinishedTasks:
    """Counts and pages of a Selection over the active read-model generation."""

    def __init__(self, generation: Generation) -> None:
        self._generation = generation

    def count(self, selection: Selection) -> int:
        conditions, params = selection.conditions()

        def run(cur: Cursor, g: int) -> int:
            row = cur.execute(reads.count_tasks(g, where(conditions)), params).fetchone()
            return int(row["n"]) if row else 0

        return self._generation.query(run, snapshot=False)

    def pages(self, selection: Selection, size: int = 500) -> Iterator[list[dict[str, Any]]]:
        """The selected tasks, oldest first, ``size`` at a time: id, definition_id,
        status, error_type, created_at, updated_at."""
        after: list[Any] = []
        while True:
            conditions, params = selection.conditions()
            if after:
                conditions.append(statement("finished_after"))
                params += after
            rows = self._page(where(conditions), [*params, size])
            if rows:
                yield rows
            if len(rows) < size:
                return
            last = rows[-1]
            after = [last["created_at"], last["created_at"], last["id"]]

    def _page(self, clause: str, params: list[Any]) -> list[dict[str, Any]]:
        def run(cur: Cursor, g: int) -> list[dict[str, Any]]:
            return cur.execute(reads.finished_tasks(g, clause), params).fetchall()

        return self._generation.query(run, snapshot=False)
