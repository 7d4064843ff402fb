"""Where SQL may be written: the event store's in commands/event_store_sql.py, the read
models' in projections/sql/ (named statements in ``.sql`` files and the modules that put
them together). Any other production module holding SQL text fails here."""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

from tests.unit.test_architecture import PACKAGES, ROOT, sources

# SQL text: a statement's opening words, or a fragment no prose has (``= ?``, ``?::``).
_SQL = re.compile(
    r"\bSELECT\b.*\b(FROM|\w+\()|^\s*SELECT\s+\d|\bINSERT INTO\b"
    r"|\bUPDATE\s+\S+\s+(AS\s+\w+\s+)?SET\b"
    r"|\bDELETE FROM\b|\bCREATE\s+(UNIQUE\s+|UNLOGGED\s+)?(TABLE|INDEX)\b|\bDROP TABLE\b"
    r"|\bPRAGMA\s+\w|\bCOPY\s+\S+\s+\(|\bANALYZE\s+\S|^\s*(BEGIN|COMMIT|ROLLBACK)\b|^\s*SET\s+\w"
    r"|^\s*LISTEN\s+\S|\bWHERE\s+\S+\s*(=|<|>|IN\b|IS\b)|\bORDER BY\b|\bON CONFLICT\b|\bLIKE \?"
    r"|\b(ASC|DESC)\b|\?::|=\s*(ANY\()?\?|%s::|=\s*(ANY\()?%s"
    r"|\bCREATE\s+(SCHEMA|FUNCTION|OR REPLACE)\b|^\s*LOCK\s+TABLE\b|^\s*NOTIFY\b",
    re.DOTALL,
)
READ_MODEL_SQL = ROOT / "projections" / "sql"
EVENT_STORE_SQL = ROOT / "commands" / "event_store_sql.py"


def sql_texts(path: Path) -> Iterator[tuple[int, str]]:
    """(line, text) of each string literal that reads as SQL; docstrings are prose. An
    f-string is read whole, its fields as ``{}``."""
    tree = ast.parse(path.read_text(), str(path))
    skip = {  # docstrings, and the parts of f-strings (each read whole)
        id(part)
        for node in ast.walk(tree)
        if isinstance(node, ast.JoinedStr)
        for part in node.values
    } | {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            parts = [v.value if isinstance(v, ast.Constant) else "{}" for v in node.values]
            text = "".join(str(part) for part in parts)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) in skip:
                continue
            text = node.value
        else:
            continue
        if _SQL.search(text):
            yield node.lineno, text


def test_the_read_models_sql_lives_in_projections_sql() -> None:
    """Statements are named in projections/sql/*.sql (or put together by the modules
    there), never written inline in another projections/ module."""
    scattered = [
        f"{path.relative_to(ROOT)}:{line}: {text[:60]!r}"
        for path in sources("projections")
        if READ_MODEL_SQL not in path.parents
        for line, text in sql_texts(path)
    ]
    assert scattered == []


def test_the_event_stores_sql_lives_in_one_module() -> None:
    """Every statement against the event store (and its locks) is in
    commands/event_store_sql.py; the write side's other modules only name them."""
    scattered = [
        f"{path.relative_to(ROOT)}:{line}: {text[:60]!r}"
        for path in sources("commands")
        if path != EVENT_STORE_SQL
        for line, text in sql_texts(path)
    ]
    assert scattered == []
    assert list(sql_texts(EVENT_STORE_SQL))  # and the check sees SQL where there is some


def test_sql_in_a_module_is_caught_and_prose_is_not(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text(
        '"""SELECT the rows FROM the view, in a docstring: prose."""\n'
        'A = f"SELECT * FROM task_view_g{g} WHERE id = ?"\n'
        'B = "PRAGMA journal_mode=WAL"\n'
        "C = 'ON CONFLICT (id) DO NOTHING'\n"
        'D = f"{column} = ANY(?)"\n'
        'E = "COPY is PostgreSQL\'s, and not in a pipelined batch"\n'
        'F = f"task {task_id} is missing from the read model: UPDATE it, or DELETE it"\n'
        'G = "created_at DESC, id DESC"\n'
    )
    assert [line for line, _ in sql_texts(module)] == [2, 3, 4, 5, 8]


def test_every_named_statement_used_exists_and_is_packaged() -> None:
    from projections.sql import STATEMENTS

    used = {
        (path.relative_to(ROOT), node.args[0].value)
        for path in sources(*PACKAGES)
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "statement"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    }
    assert used and {name for _, name in used} <= STATEMENTS.keys(), used
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for package in PACKAGES
        for init in (ROOT / package).rglob("__init__.py")
    }
    assert sorted(setuptools["packages"]) == sorted(packages)  # a plain build has them all
    assert setuptools["package-data"]["projections.sql"] == ["*.sql"]
