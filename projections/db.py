"""A thin, portable SQL layer over sqlite3 and psycopg 3 for the read models.

SQL is written once with ``?`` placeholders; on PostgreSQL they become ``%s``.
Rows come back as dicts on both.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row, tuple_row

from commands.db_pool import GuardedPool
from commands.persistence import DatabaseConfig
from projections.sql import statement

WRITER_CACHE_KIB = 32 * 1024  # SQLite: the read-model writer's page cache
_BEGIN, _BEGIN_WRITE = statement("begin"), statement("sqlite_begin_write")
_COMMIT, _ROLLBACK = statement("commit"), statement("rollback")
_SNAPSHOT = statement("pg_snapshot")


class Cursor:
    """Executes portable SQL; rows are dicts.

    Pipelined, every statement runs on a psycopg cursor of its own: a psycopg cursor in
    pipeline mode keeps the results of all its statements that had not arrived when the
    next one was sent, and a fetch reads the first of them, not the last (psycopg 3.3.9;
    psycopg/psycopg#604). A fetch after a statement whose answer is not read (a DDL, a
    check that fails the transaction) could read that statement's result instead, or
    raise "the last operation didn't produce records".
    """

    def __init__(
        self,
        raw: Any,
        postgres: bool,
        pipeline: Any = None,
        connection: Any = None,
        deferred: list[bytes] | None = None,
    ) -> None:
        self._raw = raw
        self._postgres = postgres
        self._pipeline = pipeline
        self._connection = connection
        self._deferred = deferred

    @property
    def postgres(self) -> bool:
        return self._postgres

    @property
    def pipelined(self) -> bool:
        """PostgreSQL pipeline mode: statements are sent without waiting for their
        results, which arrive at the next fetch or ``sync()``; no COPY in this mode."""
        return self._pipeline is not None

    @property
    def copies(self) -> bool:
        """PostgreSQL, neither pipelined nor deferred: ``copy_rows`` may be used."""
        return self._postgres and self._pipeline is None and self._deferred is None

    @property
    def deferred(self) -> bool:
        """Writes are sent at the end, all in one query (``Database.transaction``)."""
        return self._deferred is not None

    def sync(self) -> None:
        """Wait for every statement sent so far (and raise the first error among them)."""
        if self._pipeline is not None:
            self._pipeline.sync()

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self._postgres else sql

    def execute(self, sql: str, params: Sequence[Any] = (), binary: bool = False) -> Cursor:
        """``binary`` (PostgreSQL): send and receive in the binary format, much cheaper for
        large array parameters. Deferred: the statement, its values bound here, is sent
        with the others at the end, and has no result."""
        if self._deferred is not None:
            self._deferred.append(self._raw.mogrify(self._sql(sql), params).encode())
            return self
        if self._pipeline is not None:
            self._raw = self._connection.cursor()
        self._send(self._raw, sql, params, binary)
        return self

    def _send(self, raw: Any, sql: str, params: Sequence[Any], binary: bool) -> None:
        if self._postgres and binary:
            raw.execute(sql.replace("?", "%b"), params, binary=True)
        else:
            raw.execute(self._sql(sql), params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if self._deferred is not None:
            for row in rows:
                self.execute(sql, row)
            return
        self._raw.executemany(self._sql(sql), rows)

    def copy_rows(
        self,
        table: str,
        columns: Sequence[str],
        types: Sequence[str],
        rows: Iterable[Sequence[Any]],
    ) -> None:
        """PostgreSQL: ``COPY table (columns) FROM STDIN`` in the binary format, each
        column of the given type: the cheapest way to insert many rows (a tenth of the
        client's work of an ``INSERT … SELECT FROM unnest(…)``)."""
        assert self.copies, "COPY is PostgreSQL's, and not in a pipelined or deferred batch"
        copying = statement("pg_copy_binary").format(table=table, columns=", ".join(columns))
        with self._raw.copy(copying) as copy:
            copy.set_types(list(types))
            for row in rows:
                copy.write_row(row)

    def select_tuples(
        self, sql: str, params: Sequence[Any] = (), binary: bool = False
    ) -> list[tuple[Any, ...]]:
        """Rows as tuples, in the order of the columns selected: for reads of many rows,
        where a dict per row costs more than the query. Deferred: read at once, before
        the transaction (whose writes are not sent yet): what the caller's check at the
        end is there for."""
        if self._deferred is not None:
            raw = self._connection.cursor()
            self._send(raw, sql, params, binary)
        else:
            self.execute(sql, params, binary)
            raw = self._raw  # (pipelined: the statement's own cursor)
        factory = raw.row_factory
        raw.row_factory = tuple_row if self._postgres else None  # applies to the fetch
        try:
            rows: list[tuple[Any, ...]] = raw.fetchall()
        finally:
            raw.row_factory = factory
        return rows

    def _results(self) -> None:
        if self._deferred is not None:
            raise RuntimeError("a deferred transaction's statements have no results")

    def fetchone(self) -> dict[str, Any] | None:
        self._results()
        row = self._raw.fetchone()
        return dict(row) if row is not None else None

    def fetchall(self) -> list[dict[str, Any]]:
        self._results()
        return [dict(row) for row in self._raw.fetchall()]

    @property
    def rowcount(self) -> int:
        """Rows the last statement touched (pipelined: once everything sent has run, so
        an error of any statement before it is raised here)."""
        self._results()
        self.sync()
        return int(self._raw.rowcount)


class Database:
    """Connections to the read-model database: a pool on PostgreSQL, one per thread on SQLite."""

    def __init__(self, config: DatabaseConfig, pool_size: int = 8, wait_s: float = 10.0) -> None:
        """PostgreSQL: at most ``pool_size`` connections; a request for one waits at most
        ``wait_s`` (then psycopg_pool's PoolTimeout)."""
        self.config = config
        self.postgres = config.is_postgres
        self._local = threading.local()
        self._sqlite_connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._pool: GuardedPool | None = None
        if self.postgres:
            self._pool = GuardedPool(
                config.conninfo(),
                min_size=1,
                max_size=pool_size,
                kwargs={"row_factory": dict_row},
                open=True,
                timeout=wait_s,
                name="read-models",
            )

    @property
    def pool(self) -> GuardedPool | None:
        """The PostgreSQL pool (None on SQLite): a DatabaseMonitor watches it."""
        return self._pool

    def _sqlite(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            path = self.config.read_model_path
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute(statement("sqlite_wal"))
            conn.execute(statement("sqlite_synchronous"))
            self._local.conn = conn
            with self._lock:
                self._sqlite_connections.append(conn)
        return conn

    @contextmanager
    def transaction(self, pipelined: bool = False, deferred: bool = False) -> Iterator[Cursor]:
        """One read-write transaction: committed on success, rolled back on error.

        ``pipelined`` (PostgreSQL): in pipeline mode, from BEGIN to COMMIT, so that a
        transaction of many small statements costs a few round trips, not one each.

        ``deferred`` (PostgreSQL): the statements, their values bound by the client, are
        sent at the end as one query string, which PostgreSQL runs as one implicit
        transaction (the simple query protocol; a failing statement rolls it all back):
        one round trip, and a third of the client's work of a pipelined one (no
        per-statement cursor, result or sync). No results: reads (``select_tuples``)
        run at once, before the transaction, so the caller must check at the end that
        nothing it read has changed (projections/runner.py)."""
        if self._pool is not None and deferred:
            yield from self._deferred_transaction()
            return
        if self._pool is not None:
            with self._pool.connection() as conn:
                pipeline = conn.pipeline() if pipelined else contextlib.nullcontext()
                with pipeline as pipe, conn.transaction(), conn.cursor() as cur:
                    yield Cursor(cur, postgres=True, pipeline=pipe, connection=conn)
            return
        conn = self._sqlite()
        if not getattr(self._local, "writes", False):
            # The writer's page cache (2 MB by default) holds a catch-up batch's index
            # pages: fewer reads from the file. Readers keep the default.
            conn.execute(statement("sqlite_cache_size").format(kib=WRITER_CACHE_KIB))
            self._local.writes = True
        conn.execute(_BEGIN_WRITE)
        try:
            yield Cursor(conn.cursor(), postgres=False)
        except BaseException:
            conn.execute(_ROLLBACK)
            raise
        conn.execute(_COMMIT)

    def _deferred_transaction(self) -> Iterator[Cursor]:
        assert self._pool is not None
        with self._pool.connection() as conn:
            statements: list[bytes] = []
            conn.autocommit = True  # no BEGIN of the driver's: the query is the transaction
            try:
                yield Cursor(psycopg.ClientCursor(conn), True, connection=conn, deferred=statements)
                if statements:
                    conn.execute(b";\n".join(statements), prepare=False)
            finally:
                conn.autocommit = False

    @contextmanager
    def read(self) -> Iterator[Cursor]:
        """A read-only unit of work (autocommit reads)."""
        if self._pool is not None:
            with self._pool.connection() as conn, conn.cursor() as cur:
                yield Cursor(cur, postgres=True)
                conn.rollback()
            return
        yield Cursor(self._sqlite().cursor(), postgres=False)

    def ping(self) -> None:
        """One round trip (``/health``); raises what the connection raises."""
        with self.read() as cur:
            cur.execute(statement("ping")).fetchone()

    @contextmanager
    def snapshot(self) -> Iterator[Cursor]:
        """Several reads that see one consistent state of the database."""
        if self._pool is not None:
            with self._pool.connection() as conn, conn.cursor() as cur:
                cur.execute(_SNAPSHOT)
                yield Cursor(cur, postgres=True)
                conn.rollback()
            return
        conn = self._sqlite()
        conn.execute(_BEGIN)
        try:
            yield Cursor(conn.cursor(), postgres=False)
        finally:
            conn.execute(_COMMIT)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
        with self._lock:
            for conn in self._sqlite_connections:
                conn.close()
            self._sqlite_connections.clear()
        self._local = threading.local()
