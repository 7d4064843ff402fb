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

from psycopg.rows import dict_row, tuple_row
from psycopg_pool import ConnectionPool

from commands.persistence import DatabaseConfig

WRITER_CACHE_KIB = 32 * 1024  # SQLite: the read-model writer's page cache


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
        self, raw: Any, postgres: bool, pipeline: Any = None, connection: Any = None
    ) -> None:
        self._raw = raw
        self._postgres = postgres
        self._pipeline = pipeline
        self._connection = connection

    @property
    def postgres(self) -> bool:
        return self._postgres

    @property
    def pipelined(self) -> bool:
        """PostgreSQL pipeline mode: statements are sent without waiting for their
        results, which arrive at the next fetch or ``sync()``; no COPY in this mode."""
        return self._pipeline is not None

    def sync(self) -> None:
        """Wait for every statement sent so far (and raise the first error among them)."""
        if self._pipeline is not None:
            self._pipeline.sync()

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self._postgres else sql

    def execute(self, sql: str, params: Sequence[Any] = (), binary: bool = False) -> Cursor:
        """``binary`` (PostgreSQL): send and receive in the binary format, much cheaper for
        large array parameters."""
        if self._pipeline is not None:
            self._raw = self._connection.cursor()
        if self._postgres and binary:
            self._raw.execute(sql.replace("?", "%b"), params, binary=True)
        else:
            self._raw.execute(self._sql(sql), params)
        return self

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
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
        assert self._postgres, "COPY is PostgreSQL's"
        statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"
        with self._raw.copy(statement) as copy:
            copy.set_types(list(types))
            for row in rows:
                copy.write_row(row)

    def select_tuples(
        self, sql: str, params: Sequence[Any] = (), binary: bool = False
    ) -> list[tuple[Any, ...]]:
        """Rows as tuples, in the order of the columns selected: for reads of many rows,
        where a dict per row costs more than the query."""
        self.execute(sql, params, binary)
        raw = self._raw  # (pipelined: the statement's own cursor)
        factory = raw.row_factory
        raw.row_factory = tuple_row if self._postgres else None  # applies to the fetch
        try:
            rows: list[tuple[Any, ...]] = raw.fetchall()
        finally:
            raw.row_factory = factory
        return rows

    def fetchone(self) -> dict[str, Any] | None:
        row = self._raw.fetchone()
        return dict(row) if row is not None else None

    def fetchall(self) -> list[dict[str, Any]]:
        return [dict(row) for row in self._raw.fetchall()]

    @property
    def rowcount(self) -> int:
        """Rows the last statement touched (pipelined: once everything sent has run, so
        an error of any statement before it is raised here)."""
        self.sync()
        return int(self._raw.rowcount)


class Database:
    """Connections to the read-model database: a pool on PostgreSQL, one per thread on SQLite."""

    def __init__(self, config: DatabaseConfig, pool_size: int = 8) -> None:
        self.config = config
        self.postgres = config.is_postgres
        self._local = threading.local()
        self._sqlite_connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._pool: ConnectionPool[Any] | None = None
        if self.postgres:
            self._pool = ConnectionPool(
                config.conninfo(),
                min_size=1,
                max_size=pool_size,
                kwargs={"row_factory": dict_row},
                open=True,
                timeout=10,
            )

    def _sqlite(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            path = self.config.read_model_path
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
            with self._lock:
                self._sqlite_connections.append(conn)
        return conn

    @contextmanager
    def transaction(self, pipelined: bool = False) -> Iterator[Cursor]:
        """One read-write transaction: committed on success, rolled back on error.

        ``pipelined`` (PostgreSQL): in pipeline mode, from BEGIN to COMMIT, so that a
        transaction of many small statements costs a few round trips, not one each."""
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
            conn.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
            self._local.writes = True
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield Cursor(conn.cursor(), postgres=False)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[Cursor]:
        """A read-only unit of work (autocommit reads)."""
        if self._pool is not None:
            with self._pool.connection() as conn, conn.cursor() as cur:
                yield Cursor(cur, postgres=True)
                conn.rollback()
            return
        yield Cursor(self._sqlite().cursor(), postgres=False)

    @contextmanager
    def snapshot(self) -> Iterator[Cursor]:
        """Several reads that see one consistent state of the database."""
        if self._pool is not None:
            with self._pool.connection() as conn, conn.cursor() as cur:
                cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                yield Cursor(cur, postgres=True)
                conn.rollback()
            return
        conn = self._sqlite()
        conn.execute("BEGIN")
        try:
            yield Cursor(conn.cursor(), postgres=False)
        finally:
            conn.execute("COMMIT")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
        with self._lock:
            for conn in self._sqlite_connections:
                conn.close()
            self._sqlite_connections.clear()
        self._local = threading.local()
