"""Where events and read models live: one database URL, SQLite or PostgreSQL.

``sqlite:///relative/or/absolute/path.db`` or ``postgresql://user:pass@host:port/db``.
A ``schema`` query parameter on a PostgreSQL URL (``?schema=name``) keeps every table
of this service in that schema (tests use one schema per test).
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from commands.fast_paths import FastPaths

APPLICATION_NAME = "taskexec"  # pinned: it names the PostgreSQL tables of the event store
# Every connection of every process: named (pg_stat_activity), a bounded connect (2 s is
# libpq's least), and a dead peer noticed by TCP itself, not minutes later (keepalives
# on an idle connection; tcp_user_timeout when sent data stays unacknowledged).
CONNECTION_OPTIONS = {
    "application_name": APPLICATION_NAME,
    "connect_timeout": "2",
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "3",
    "keepalives_count": "3",
    "tcp_user_timeout": "10000",
}
_SCHEMA = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# PostgreSQL's event recorder (commands/pg_recorder.py): the fast path ``pg_insert``
# records a batch in one statement; the plain one inserts the library's way.
FAST_RECORDER_TOPIC = "commands.pg_recorder:BinaryInsertProcessRecorder"
PLAIN_RECORDER_TOPIC = "commands.pg_recorder:SerialDdlProcessRecorder"


class DatabaseUrlError(ValueError):
    """The database URL cannot be used."""


@dataclass(frozen=True)
class DatabaseConfig:
    """A parsed ``TASKEXEC_DATABASE_URL``."""

    kind: str  # "sqlite" | "postgres" | "memory"
    sqlite_path: Path | None = None
    host: str = "127.0.0.1"
    port: int = 5432
    user: str = ""
    password: str = ""
    dbname: str = ""
    schema: str = ""

    @classmethod
    def from_url(cls, url: str) -> DatabaseConfig:
        parts = urlsplit(url)
        if parts.scheme == "sqlite":
            # sqlite:///var/x.db is relative to the working directory; sqlite:////abs/x.db absolute.
            if not url.startswith("sqlite:///") or parts.query or parts.fragment:
                raise DatabaseUrlError(
                    "a sqlite URL needs a file path: sqlite:///relative/path.db "
                    "or sqlite:////absolute/path.db"
                )
            path = unquote(url[len("sqlite:///") :])
            if not path or path.endswith("/"):
                raise DatabaseUrlError(
                    "a sqlite URL needs a file path: sqlite:///./var/taskexec.db"
                )
            return cls(kind="sqlite", sqlite_path=Path(path))
        if parts.scheme in ("postgresql", "postgres"):
            query = parse_qs(parts.query)
            schema = query.get("schema", [""])[0]
            if schema and not _SCHEMA.fullmatch(schema):
                raise DatabaseUrlError(f"schema {schema!r} must match {_SCHEMA.pattern}")
            dbname = unquote(parts.path.lstrip("/"))
            if not dbname:
                raise DatabaseUrlError("a postgresql URL needs a database name")
            try:
                port = parts.port or 5432
            except ValueError:
                raise DatabaseUrlError(f"invalid port in database URL: {parts.netloc}") from None
            return cls(
                kind="postgres",
                host=parts.hostname or "127.0.0.1",
                port=port,
                user=unquote(parts.username or ""),
                password=unquote(parts.password or ""),
                dbname=dbname,
                schema=schema,
            )
        raise DatabaseUrlError(
            f"unsupported database URL scheme {parts.scheme!r}: use sqlite:/// or postgresql://"
        )

    @classmethod
    def memory(cls, name: str = "") -> DatabaseConfig:
        """An event store in this process's memory, for tests (commands/memory.py): every
        service built from this config shares it. No read models, no URL: never ``serve``."""
        return cls(kind="memory", dbname=name or f"memory-{uuid.uuid4().hex}")

    @property
    def read_model_path(self) -> Path:
        """SQLite: read models live in a file of their own beside the events
        (``taskexec.db`` -> ``taskexec-views.db``), so that projecting never holds the
        write lock that appending events needs."""
        assert self.sqlite_path is not None
        return self.sqlite_path.with_name(
            f"{self.sqlite_path.stem}-views{self.sqlite_path.suffix or '.db'}"
        )

    @property
    def is_postgres(self) -> bool:
        return self.kind == "postgres"

    def conninfo(self) -> str:
        """A libpq connection string (PostgreSQL only), with the connection options."""
        fields = {
            "host": self.host,
            "port": str(self.port),
            "dbname": self.dbname,
            "user": self.user or os.environ.get("USER", ""),
            "password": self.password,
            **CONNECTION_OPTIONS,
        }
        if self.schema:
            fields["options"] = f"-csearch_path={self.schema}"
        return " ".join(f"{k}='{_quote(v)}'" for k, v in fields.items() if v)

    def eventsourcing_env(
        self,
        pool_size: int = 10,
        pool_wait_s: float = 30.0,
        fast_paths: FastPaths | None = None,
    ) -> dict[str, str]:
        """The environment that configures the eventsourcing Application: at most
        ``pool_size`` connections (no overflow), each request for one waiting at most
        ``pool_wait_s`` (a ``serve`` waits little: commands/db_pool.py); the shortcuts
        to take (None: all; TaskService reads them back: commands/fast_paths.py)."""
        fast_paths = fast_paths or FastPaths()
        if self.kind == "memory":
            from commands.memory import memory_env

            return {**memory_env(self.dbname), **fast_paths.to_eventsourcing_env()}
        if self.kind == "sqlite":
            assert self.sqlite_path is not None
            self.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
            return {
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": str(self.sqlite_path),
                "SQLITE_LOCK_TIMEOUT": "10",
                **fast_paths.to_eventsourcing_env(),
            }
        env = {
            "POSTGRES_DBNAME": self.dbname,
            "POSTGRES_HOST": self.host,
            "POSTGRES_PORT": str(self.port),
            "POSTGRES_USER": self.user or os.environ.get("USER", "postgres"),
            "POSTGRES_PASSWORD": self.password,
            # 0 would wait forever for the table lock (see FIELD-NOTES): bound it.
            "POSTGRES_LOCK_TIMEOUT": "10",
            "POSTGRES_POOL_SIZE": str(pool_size),
            "POSTGRES_MAX_OVERFLOW": "0",  # the budget is the pool (docs/operations.md)
            # Our factory: the library's, with a pool that fails fast (commands/db_pool.py)
            # and connections that carry CONNECTION_OPTIONS.
            "PERSISTENCE_MODULE": "commands.db_pool:Factory",
            "TASKEXEC_PG_CONNINFO": _options_conninfo(),
            "TASKEXEC_PG_POOL_WAIT": f"{pool_wait_s:g}",
            "PROCESS_RECORDER_TOPIC": (
                FAST_RECORDER_TOPIC if fast_paths.pg_insert else PLAIN_RECORDER_TOPIC
            ),
            **fast_paths.to_eventsourcing_env(),
        }
        if self.schema:
            env["POSTGRES_SCHEMA"] = self.schema
        return env


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _options_conninfo() -> str:
    return " ".join(f"{k}='{_quote(v)}'" for k, v in CONNECTION_OPTIONS.items())


def prepare_database(config: DatabaseConfig) -> None:
    """Create what must exist before the event store opens (the PostgreSQL schema)."""
    if config.is_postgres and config.schema:
        import psycopg

        from commands.event_store_sql import create_schema

        # IF NOT EXISTS checks before it creates: another process may win the race.
        with (
            psycopg.connect(config.conninfo(), autocommit=True) as conn,
            contextlib.suppress(psycopg.errors.UniqueViolation),
        ):
            conn.execute(create_schema(config.schema))
