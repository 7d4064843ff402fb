"""Single-active roles across ``serve`` replicas: whoever holds the lock does the work.

The relay (and the projection runner) must run in one process at a time however many
replicas share a database: two relays would fight over one tracking row and, lagging,
republish work past JetStream's de-duplication window. On PostgreSQL the lock is a
session advisory lock (it goes with its connection, so a killed process frees it at
once); a process's roles share one connection for their locks (a LockSession: one
connection of the budget, docs/operations.md); on SQLite, an exclusive ``flock`` on a
file beside the database (freed by the kernel when the process dies).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import zlib
from typing import Any, Protocol

import psycopg

from commands import event_store_sql as sql
from commands.db_monitor import DatabaseMonitor, sever
from commands.persistence import DatabaseConfig

log = logging.getLogger(__name__)


def lock_key(config: DatabaseConfig, purpose: str) -> int:
    """A PostgreSQL advisory lock key of this deployment (advisory locks are per database,
    so two deployments in two schemas of one database must not share keys)."""
    return zlib.crc32(f"taskexec:{config.schema or 'public'}:{purpose}".encode())


class Leadership(Protocol):
    """A lock that at most one process holds at a time."""

    def acquire(self) -> bool:
        """Take the lock if it is free (never waits); True while held."""
        ...

    @property
    def held(self) -> bool:
        """Held as far as this process knows (no I/O)."""
        ...

    def check(self) -> bool:
        """Still held? Asks the database; False (and released) once the lock is gone."""
        ...

    def release(self) -> None: ...


class LockSession:
    """One autocommit connection holding session advisory locks (several roles may share
    it: one connection for all of a process's locks). Thread-safe. When the connection is
    lost, every lock on it is lost with it (the server frees them)."""

    def __init__(self, conninfo: str, monitor: DatabaseMonitor | None = None) -> None:
        self._conninfo = conninfo
        self._monitor = monitor
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._keys: set[int] = set()  # the locks taken on the current connection

    def watch(self, monitor: DatabaseMonitor) -> None:
        """No connect attempts while ``monitor`` is open; sever the connection then."""
        self._monitor = monitor
        monitor.on_outage(self.sever)

    def try_lock(self, key: int, purpose: str) -> bool:
        """Take lock ``key`` if it is free (never waits)."""
        with self._lock:
            if key in self._keys:
                return self._alive(purpose)
            conn = self._connection(purpose)
            if conn is None:
                return False
            try:
                row = conn.execute(sql.TRY_ADVISORY_LOCK, (key,)).fetchone()
            except psycopg.Error as exc:
                log.warning("%s: lock not taken: %r", purpose, exc)
                self._lost()
                return False
            if row and row[0]:
                self._keys.add(key)
                return True
            return False

    def holds(self, key: int) -> bool:
        """Held as far as this process knows (no I/O)."""
        return key in self._keys

    def check(self, key: int, purpose: str) -> bool:
        """Still held? Asks the database."""
        with self._lock:
            return key in self._keys and self._alive(purpose)

    def unlock(self, key: int) -> None:
        with self._lock:
            if key in self._keys and self._conn is not None:
                self._keys.discard(key)
                try:
                    self._conn.execute(sql.ADVISORY_UNLOCK, (key,))
                except psycopg.Error:
                    self._lost()
            if not self._keys:  # nothing held: no connection kept for nothing
                self._close()

    def close(self) -> None:
        """Let go of every lock and the connection (a process that stops)."""
        with self._lock:
            self._lost()

    def sever(self) -> None:
        """From any thread: the database is gone; fail whoever waits on the connection."""
        conn = self._conn
        if conn is not None:
            sever(conn)

    def _connection(self, purpose: str) -> psycopg.Connection[Any] | None:
        if self._conn is not None:
            return self._conn
        if self._monitor is not None and self._monitor.is_open:
            return None  # no connect attempts against a database known to be gone
        try:
            self._conn = psycopg.connect(self._conninfo, autocommit=True)
        except psycopg.Error as exc:
            log.warning("%s: cannot reach PostgreSQL: %r", purpose, exc)
            return None
        return self._conn

    def _alive(self, purpose: str) -> bool:
        if self._conn is None:
            return False
        try:
            self._conn.execute(sql.PING)
        except psycopg.Error as exc:
            log.warning("%s: locks lost with their connection: %r", purpose, exc)
            self._lost()
            return False
        return True

    def _lost(self) -> None:
        self._keys.clear()
        self._close()

    def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None


class AdvisoryLock:
    """A PostgreSQL session advisory lock, on a LockSession of its own or a shared one."""

    def __init__(
        self, config: DatabaseConfig, purpose: str, session: LockSession | None = None
    ) -> None:
        self._session = session or LockSession(config.conninfo())
        self._key = lock_key(config, purpose)
        self._purpose = purpose

    def acquire(self) -> bool:
        if self._session.holds(self._key):
            return self.check()
        if self._session.try_lock(self._key, self._purpose):
            log.info("%s: this process is the active one", self._purpose)
            return True
        return False

    @property
    def held(self) -> bool:
        return self._session.holds(self._key)

    def check(self) -> bool:
        return self._session.check(self._key, self._purpose)

    def release(self) -> None:
        self._session.unlock(self._key)


class FileLock:
    """An exclusive, non-blocking ``flock`` on ``path`` (SQLite deployments)."""

    def __init__(self, path: os.PathLike[str] | str, purpose: str) -> None:
        self._path = os.fspath(path)
        self._purpose = purpose
        self._fd: int | None = None

    def acquire(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        log.info("%s: this process is the active one", self._purpose)
        return True

    @property
    def held(self) -> bool:
        return self._fd is not None

    def check(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None


def leadership(
    config: DatabaseConfig, purpose: str, session: LockSession | None = None
) -> Leadership:
    """The lock for ``purpose`` that fits the database of ``config`` (on PostgreSQL, on
    ``session`` if given: one connection for several roles)."""
    if config.is_postgres:
        return AdvisoryLock(config, purpose, session)
    return FileLock(f"{config.sqlite_path}.{purpose}.lock", purpose)
