"""The read models' SQL, in one place: named statements in the ``.sql`` files beside this
module (each after a ``-- name: <name>`` line), read once, and the few helpers that put
the dynamic ones together (``task_writes``, ``reads``).

A statement is kept on one line (comment lines dropped, lines joined by a space). Fields
in braces (a generation's table, a column list) are filled with ``str.format``; values
are ``?`` parameters (projections/db.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from importlib.resources import files

_NAME = re.compile(r"^-- name: (\w+)[ \t]*$", re.MULTILINE)


def _parse(text: str) -> dict[str, str]:
    parts = _NAME.split(text)
    found: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        lines = (line.strip() for line in body.splitlines())
        found[name] = " ".join(line for line in lines if line and not line.startswith("--"))
    return found


def _load() -> dict[str, str]:
    statements: dict[str, str] = {}
    for resource in sorted(files(__name__).iterdir(), key=lambda r: r.name):
        if resource.name.endswith(".sql"):
            for name, text in _parse(resource.read_text(encoding="utf-8")).items():
                if name in statements:
                    raise ValueError(f"{resource.name}: statement {name} is named twice")
                statements[name] = text
    return statements


STATEMENTS = _load()


def statement(name: str) -> str:
    """The statement (or fragment) called ``name``, its fields still unfilled."""
    return STATEMENTS[name]


def equals(column: str) -> str:
    return f"{column} = ?"


def any_of(column: str) -> str:
    """PostgreSQL: ``column`` is one of the values of one array parameter."""
    return f"{column} = ANY(?)"


def one_of(column: str, count: int) -> str:
    """``column`` is one of ``count`` parameters."""
    return f"{column} IN ({marks(count)})"


def marks(count: int) -> str:
    return ", ".join("?" for _ in range(count))


def where(conditions: Iterable[str]) -> str:
    """``WHERE`` the conditions all hold; empty without any."""
    joined = " AND ".join(conditions)
    return f"WHERE {joined}" if joined else ""


def is_index(ddl: str) -> bool:
    """Does ``ddl`` create an index (rather than a table)?"""
    return ddl.lstrip().upper().startswith(("CREATE INDEX", "CREATE UNIQUE INDEX"))
