"""Every SQL statement the service sends to the event store's database, in one place.

The tables are eventsourcing 9.5.6's (pinned): on SQLite ``stored_events``, its position
the ``rowid``; on PostgreSQL ``"<schema>".taskexec_events``, its position the
``notification_id``. A read is one template over ``{position}`` and ``{table}`` with
``?`` for parameters, which ``EventTables.sql`` renders for its dialect: both dialects
side by side. What only PostgreSQL has (the recorder's insert function, advisory locks,
the schema) follows. Readers: commands/event_reader.py; the rest say where they are used.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from psycopg.sql import SQL, Composed, Identifier, Literal

COLUMNS = "originator_id, originator_version, topic, state"

# -- reads of the events table (commands/event_reader.py) ------------------------------
# A page of the notification log: what ``select_notifications(after, limit,
# inclusive_of_start=False)`` selects.
LOG_PAGE = (
    f"SELECT {{position}}, {COLUMNS} FROM {{table}} "
    "WHERE {position} > ? ORDER BY {position} LIMIT ?"
)
LOG_PAGE_UNTIL = (
    f"SELECT {{position}}, {COLUMNS} FROM {{table}} "
    "WHERE {position} > ? AND {position} <= ? ORDER BY {position} LIMIT ?"
)
COUNT = "SELECT COUNT(*) FROM {table}"
AGGREGATE = (
    f"SELECT {{position}}, {COLUMNS} FROM {{table}} "
    "WHERE originator_id = ? ORDER BY originator_version"
)


def aggregates_page(low: bool, high: bool, after: bool) -> str:
    """Events of the aggregates ``low <= id < high`` in key order (id, then version),
    after the key ``(id, version)`` when ``after``; parameters in that order, then a limit."""
    conditions = [
        *(["originator_id >= ?"] if low else []),
        *(["originator_id < ?"] if high else []),
        *(["(originator_id, originator_version) > (?, ?)"] if after else []),
    ]
    where = f"WHERE {' AND '.join(conditions)} " if conditions else ""
    return (
        f"SELECT {{position}}, {COLUMNS} FROM {{table}} {where}"
        "ORDER BY originator_id, originator_version LIMIT ?"
    )


def many_aggregates(postgres: bool, count: int) -> str:
    """Every event of ``count`` aggregates (one array parameter on PostgreSQL)."""
    return (
        f"SELECT {COLUMNS} FROM {{table}} WHERE {_any_of(postgres, count)} "
        "ORDER BY originator_id, originator_version"
    )


def existing(postgres: bool, count: int) -> str:
    """Which of ``count`` aggregate ids have an event (one array parameter on PostgreSQL)."""
    return f"SELECT DISTINCT originator_id FROM {{table}} WHERE {_any_of(postgres, count)}"


def _any_of(postgres: bool, count: int) -> str:
    return "originator_id = ANY(?)" if postgres else f"originator_id IN ({', '.join('?' * count)})"


@dataclass(frozen=True)
class EventTables:
    """The events table of one store, and how its dialect writes a statement."""

    postgres: bool
    table: str  # as it appears in a statement: quoted and qualified on PostgreSQL

    @classmethod
    def sqlite(cls, table: str) -> EventTables:
        return cls(False, table)

    @classmethod
    def postgresql(cls, schema: str, table: str) -> EventTables:
        return cls(True, f"{_quoted(schema)}.{_quoted(table)}")

    def sql(self, template: str) -> str:
        """``template`` in this dialect."""
        return _render(self, template)


@cache
def _render(tables: EventTables, template: str) -> str:
    position = "notification_id" if tables.postgres else "rowid"
    text = template.format(position=position, table=tables.table)
    return text.replace("?", "%s") if tables.postgres else text


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# -- PostgreSQL: the recorder's one-statement insert (commands/pg_recorder.py) ----------
INSERT_FUNCTION = "taskexec_insert_events_v1"  # a new signature gets a new version


def ddl_lock(schema: str) -> tuple[Composed, Composed]:
    """(lock, unlock): one process at a time creates the tables of ``schema``."""
    key = SQL("hashtext({0})").format(Literal(f"taskexec-ddl:{schema}"))
    return (
        SQL("SELECT pg_advisory_lock({0})").format(key),
        SQL("SELECT pg_advisory_unlock({0})").format(key),
    )


def insert_function(
    schema: str, events: str, tracking: str, channel: str, id_type: str, lock_timeout: float
) -> tuple[Composed, Composed]:
    """(CREATE the function, the statement that calls it with a batch)."""
    names = {
        "schema": Identifier(schema),
        "events": Identifier(events),
        "tracking": Identifier(tracking),
        "channel": Identifier(channel),
        "function": Identifier(INSERT_FUNCTION),
        "id_type": Identifier(id_type),
        "lock_timeout": Literal(f"{lock_timeout}s"),
    }
    call = "SELECT n AS notification_id FROM {schema}.{function}(%b, %b, %b, %b, %s, %s) AS n"
    return SQL(_FUNCTION).format(**names), SQL(call).format(**names)


# What the library's insert does, in its order: tracking row (single-row table: it only
# moves forward, else the batch is refused), then the lock, the NOTIFY, the rows.
_FUNCTION = """
CREATE OR REPLACE FUNCTION {schema}.{function}(
    ids {id_type}[], versions bigint[], topics text[], states bytea[],
    tracking_name text, tracking_id bigint
) RETURNS SETOF bigint LANGUAGE plpgsql AS $body$
BEGIN
    IF tracking_name IS NOT NULL THEN
        INSERT INTO {schema}.{tracking} AS t (application_name, notification_id)
        VALUES (tracking_name, tracking_id)
        ON CONFLICT (application_name) DO UPDATE SET notification_id = tracking_id
        WHERE t.notification_id < tracking_id;
        IF NOT FOUND THEN
            RAISE unique_violation USING MESSAGE =
                'Failed to record tracking for ' || tracking_name || ' ' || tracking_id;
        END IF;
    END IF;
    IF cardinality(ids) > 0 THEN
        PERFORM set_config('lock_timeout', {lock_timeout}, true);
        LOCK TABLE {schema}.{events} IN EXCLUSIVE MODE;
        NOTIFY {channel};
        RETURN QUERY
            INSERT INTO {schema}.{events} (originator_id, originator_version, topic, state)
            SELECT * FROM unnest(ids, versions, topics, states)
            RETURNING notification_id;
    END IF;
END
$body$
"""

# -- PostgreSQL: sessions (commands/leadership.py, commands/db_monitor.py) ---------------
TRY_ADVISORY_LOCK = "SELECT pg_try_advisory_lock(%s)"
ADVISORY_UNLOCK = "SELECT pg_advisory_unlock(%s)"
PING = "SELECT 1"  # is the connection alive?


def create_schema(schema: str) -> str:
    """The deployment's schema (commands/persistence.py); IF NOT EXISTS: races are fine."""
    return f"CREATE SCHEMA IF NOT EXISTS {_quoted(schema)}"
