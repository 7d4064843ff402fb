"""The read-model queries ``taskexec verify`` runs: each reads the rows it needs together
with the read model's position, in the snapshot of one ``Generation.query``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from projections.db import Cursor
from projections.schema import read_position
from projections.sql import any_of, one_of, reads

CHUNK = 900  # ids per statement: below SQLite's old default limit of 999 parameters


@dataclass(frozen=True)
class Baseline:
    """The read model's totals at one position ``P0``."""

    position: int
    counts: dict[tuple[str, str], int]
    task_rows: int
    definition_rows: int
    # (tenant, status, type) -> n: the tenants' counts, and the rows with a tenant counted.
    tenant_counts: dict[tuple[str, str, str], int] = field(default_factory=dict)
    tenant_rows: dict[tuple[str, str, str], int] = field(default_factory=dict)


def _tenant_counts(cur: Cursor, statement: str) -> dict[tuple[str, str, str], int]:
    rows = cur.execute(statement).fetchall()
    return {(r["tenant"], r["status"], r["type"]): int(r["n"]) for r in rows if int(r["n"])}


def read_baseline(cur: Cursor, g: int) -> Baseline:
    counts = {
        (row["status"], row["type"]): int(row["n"])
        for row in cur.execute(reads.task_counts(g)).fetchall()
        if int(row["n"])
    }
    tasks = cur.execute(reads.count_tasks(g)).fetchone()
    definitions = cur.execute(reads.count_definitions(g)).fetchone()
    return Baseline(
        read_position(cur, g),
        counts,
        int(tasks["n"]) if tasks else 0,
        int(definitions["n"]) if definitions else 0,
        _tenant_counts(cur, reads.tenant_counts(g)),
        _tenant_counts(cur, reads.tenant_counts_of_rows(g)),
    )


def _in(cur: Cursor, column: str, ids: Sequence[str]) -> tuple[str, list[Any]]:
    if cur.postgres:
        return any_of(column), [list(ids)]
    return one_of(column, len(ids)), list(ids)


def task_rows(cur: Cursor, g: int, ids: Sequence[str]) -> tuple[int, dict[str, dict[str, Any]]]:
    """The position, and the task rows of ``ids`` by id."""
    rows: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), CHUNK):
        condition, params = _in(cur, "id", ids[start : start + CHUNK])
        for row in cur.execute(reads.task_rows(g, condition), params).fetchall():
            rows[row["id"]] = row  # JSON columns stay text: compared as text first
    return read_position(cur, g), rows


def definition_rows(
    cur: Cursor, g: int, ids: Sequence[str]
) -> tuple[int, dict[str, dict[str, Any]]]:
    """The position, and the definition rows of ``ids`` by id (documents decoded)."""
    rows: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), CHUNK):
        condition, params = _in(cur, "id", ids[start : start + CHUNK])
        for row in cur.execute(reads.definition_rows(g, condition), params).fetchall():
            row["document"] = json.loads(row["document"])
            rows[row["id"]] = row
    return read_position(cur, g), rows


def task_ids(cur: Cursor, g: int) -> list[str]:
    return [row["id"] for row in cur.execute(reads.task_ids(g)).fetchall()]
