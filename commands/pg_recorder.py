"""The PostgreSQL event recorders: eventsourcing's, with its tables created by one
process at a time, and one that records a batch of events in one statement.

The library records a batch in pipeline mode (BEGIN, the tracking row, SET LOCAL
lock_timeout, LOCK TABLE, NOTIFY, the INSERT with the rows as a text-format array of a
composite type, a sync, COMMIT): psycopg's pipeline machinery and its regex-escaping
dumper, in Python, paid per batch. ``BinaryInsertProcessRecorder`` (the fast path
``pg_insert``, commands/fast_paths.py) does the same work in one statement:
``taskexec_insert_events_v1``, a PL/pgSQL function of its own in the deployment's schema
(not the library's ``POSTGRES_ENABLE_DB_FUNCTIONS`` one, which skips the table lock and
the tracking row), that records the tracking row, takes the same table lock, notifies the
same channel and inserts the rows from four arrays sent in the binary format, in
autocommit: one round trip. Same rows, same notification ids in the same order, same
IntegrityError when a version or a tracking position is taken. It overrides methods of
eventsourcing 9.5.6 (pinned). Its SQL: commands/event_store_sql.py.

Switched off (``TASKEXEC_FAST_PG_INSERT=off``): ``SerialDdlProcessRecorder``, whose
inserts are the library's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent, Tracking
from eventsourcing.postgres import PostgresProcessRecorder

from commands import event_store_sql as sql
from commands.db_monitor import DatabaseUnavailable
from commands.db_pool import NotRecorded, OutcomeUnknown


class SerialDdlProcessRecorder(PostgresProcessRecorder):
    """eventsourcing's process recorder, its tables created by one process at a time."""

    def create_table(self) -> None:
        """The library's tables (and a subclass's function), one process at a time:
        replicas starting together on a new schema would otherwise each see no tracking
        table and each record its migration row (all but one failing with
        IntegrityError), or replace a function at the same moment ("tuple concurrently
        updated")."""
        lock, unlock = sql.ddl_lock(self.datastore.schema)
        # The lock on a connection of its own, not one of the pool's: the library's DDL
        # takes pool connections while it runs, and a pool of one (a command line's
        # budget) would wait for itself. This one is closed before anything else opens.
        pool = self.datastore.pool
        kwargs = pool.kwargs if isinstance(pool.kwargs, dict) else {}
        with psycopg.connect(str(pool.conninfo or ""), autocommit=True, **kwargs) as conn:
            conn.execute(lock)
            try:
                super().create_table()
            finally:
                conn.execute(unlock)


class BinaryInsertProcessRecorder(SerialDdlProcessRecorder):
    """A process recorder that records a batch (events and tracking) in one statement."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.datastore.single_row_tracking:  # the function writes that table's way
            raise ValueError("the taskexec recorder needs single-row tracking (the default)")
        self._create_function, self._insert = sql.insert_function(
            schema=self.datastore.schema,
            events=self.events_table_name,
            tracking=self.tracking_table_name,
            channel=self.channel_name,
            id_type=self.datastore.originator_id_type,
            lock_timeout=self.datastore.lock_timeout,
        )

    def _create_table(self, curs: Any) -> None:
        super()._create_table(curs)
        curs.execute(self._create_function, prepare=False)

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """Record the events (and tracking row) in one statement.

        Not retried here (the library retries ten times): a statement whose connection
        died may have committed, and inserting again would then refuse the same events
        (IntegrityError), which the service takes for a race and decides again, with new
        task ids: a duplicate. So a failure says what it left behind instead:
        ``NotRecorded`` (no connection, or the server refused the statement) or
        ``OutcomeUnknown`` (the connection failed once the statement was sent)."""
        tracking: Tracking | None = kwargs.get("tracking")
        params = (
            [event.originator_id for event in stored_events],
            [event.originator_version for event in stored_events],
            [event.topic for event in stored_events],
            [event.state for event in stored_events],
            tracking.application_name if tracking else None,
            tracking.notification_id if tracking else None,
        )
        # get_connection turns psycopg's errors into the library's (IntegrityError…).
        sent = False
        try:
            with self.datastore.get_connection() as conn, conn.cursor() as curs:
                sent = True
                curs.execute(self._insert, params, binary=True, prepare=True)
                return [row["notification_id"] for row in curs.fetchall()]
        except (InterfaceError, OperationalError, DatabaseUnavailable) as exc:
            if not sent or _refused_by_server(exc):
                raise NotRecorded(str(exc)) from exc
            raise OutcomeUnknown(str(exc)) from exc


def _refused_by_server(exc: BaseException) -> bool:
    """The server answered with an error for the statement (so it rolled back), other
    than a lost connection (class 08) or a terminated session (class 57), either of
    which may come after the statement's commit."""
    sqlstate = getattr(exc.__cause__, "sqlstate", None)
    return sqlstate is not None and sqlstate[:2] not in ("08", "57")
