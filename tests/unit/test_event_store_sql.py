"""The event store's statements (commands/event_store_sql.py), in each database's dialect
(that no other module writes SQL: tests/unit/test_sql_places.py)."""

from __future__ import annotations

from pathlib import Path

from commands import event_store_sql as sql

ROOT = Path(__file__).resolve().parents[2]
HOME = ROOT / "commands" / "event_store_sql.py"


def test_each_dialect_writes_its_own_statement() -> None:
    sqlite = sql.EventTables.sqlite("stored_events")
    postgres = sql.EventTables.postgresql("s", "taskexec_events")
    assert sqlite.sql(sql.LOG_PAGE) == (
        "SELECT rowid, originator_id, originator_version, topic, state FROM stored_events "
        "WHERE rowid > ? ORDER BY rowid LIMIT ?"
    )
    assert postgres.sql(sql.LOG_PAGE) == (
        "SELECT notification_id, originator_id, originator_version, topic, state "
        'FROM "s"."taskexec_events" WHERE notification_id > %s ORDER BY notification_id '
        "LIMIT %s"
    )
    assert sqlite.sql(sql.many_aggregates(False, 3)).count("?") == 3
    assert postgres.sql(sql.many_aggregates(True, 3)).count("%s") == 1
    assert sql.create_schema('a"b') == 'CREATE SCHEMA IF NOT EXISTS "a""b"'
