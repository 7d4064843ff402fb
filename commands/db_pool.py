"""Connection pools that fail fast: psycopg_pool's pool, gated by the DatabaseMonitor.

Both pools of a ``serve`` process are of this kind: the event store's (eventsourcing's
PostgreSQL datastore builds its own; ``Factory`` swaps it for this one before it opens)
and the read models' (projections/db.py). Each one

- refuses a connection at once while the breaker is open (``DatabaseUnavailable``: the
  projection runner, the relay and the results consumer retry it later; a request gets
  503);
- tells the monitor when a connection comes back broken or none came in time;
- knows which connections are in use, so that an outage can sever them;
- gives up reconnecting in the background after ``RECONNECT_S`` (psycopg_pool's default
  keeps trying for 5 minutes with a backoff that reaches minutes): after an outage, the
  connections are made afresh on demand, within milliseconds of the first request.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from eventsourcing.persistence import OperationalError
from eventsourcing.postgres import PostgresFactory
from eventsourcing.utils import Environment
from psycopg_pool import ConnectionPool, PoolTimeout

from commands.db_monitor import DatabaseMonitor, DatabaseUnavailable, sever
from commands.leadership import LockSession
from commands.persistence import DatabaseConfig

log = logging.getLogger(__name__)

RECONNECT_S = 2.0
# eventsourcing's environment carries these to ``Factory`` (ours, not the library's).
CONNINFO_KEY = "TASKEXEC_PG_CONNINFO"
POOL_WAIT_KEY = "TASKEXEC_PG_POOL_WAIT"


class NotRecorded(OperationalError):
    """An insert that certainly recorded nothing: no connection, or the server refused it."""


class OutcomeUnknown(OperationalError):
    """An insert whose connection failed after it was sent: it may have committed."""


class GuardedPool(ConnectionPool[Any]):
    """A psycopg_pool ConnectionPool that consults a DatabaseMonitor (when given one)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("reconnect_timeout", RECONNECT_S)
        super().__init__(*args, **kwargs)
        self.monitor: DatabaseMonitor | None = None
        self._in_use: dict[int, Any] = {}

    def watch(self, monitor: DatabaseMonitor) -> None:
        """Fail fast while ``monitor`` says the database is unreachable; sever the
        connections in use when it opens; start afresh when it closes."""
        self.monitor = monitor
        monitor.on_outage(self.sever_in_use)
        monitor.on_recovery(self.drain)

    def getconn(self, timeout: float | None = None) -> Any:
        monitor = self.monitor
        if monitor is not None:
            monitor.check()
        try:
            conn = super().getconn(timeout)
        except PoolTimeout:
            if monitor is not None:
                monitor.suspect(f"no connection from pool {self.name!r} in time")
            raise
        self._in_use[id(conn)] = conn
        return conn

    def putconn(self, conn: Any) -> None:
        self._in_use.pop(id(conn), None)
        if self.monitor is not None and (conn.broken or conn.closed):
            self.monitor.suspect(f"a connection of pool {self.name!r} broke")
        super().putconn(conn)

    def sever_in_use(self) -> None:
        """The database is gone: shut down the sockets of the connections in use, and
        answer the requests queued for a connection now rather than at their timeout."""
        in_use = list(self._in_use.values())
        for conn in in_use:
            sever(conn)
        failed = self._fail_waiting()
        if in_use or failed:
            log.warning(
                "pool %r: severed %d connection(s) in use, failed %d waiting request(s)",
                self.name,
                len(in_use),
                failed,
            )

    def _fail_waiting(self) -> int:
        # psycopg_pool 3.3 has no public way to do this: its queue of WaitingClients.
        waiting = getattr(self, "_waiting", None)
        if waiting is None:
            return 0
        with self._lock:
            clients = list(waiting)
            waiting.clear()
        error = DatabaseUnavailable(f"the database is unreachable (pool {self.name!r})")
        return sum(bool(client.fail(error)) for client in clients)


class Factory(PostgresFactory):
    """eventsourcing's PostgreSQL factory, with a GuardedPool in its datastore (same
    sizes and callbacks; our connection string: application name, timeouts, keepalives)."""

    def __init__(self, env: Environment | dict[str, str] | None) -> None:
        super().__init__(env)
        library_pool = self.datastore.pool
        wait_s = float(self.env.get(POOL_WAIT_KEY) or library_pool.timeout)
        pool: Any = GuardedPool(  # the library's annotation names its own pool class
            self.env.get(CONNINFO_KEY) or "",
            connection_class=library_pool.connection_class,
            kwargs=library_pool.kwargs,
            min_size=library_pool.min_size,
            max_size=library_pool.max_size,
            open=False,
            configure=self.datastore.after_connect_func(),
            timeout=wait_s,
            max_waiting=library_pool.max_waiting,
            max_lifetime=library_pool.max_lifetime,
            name="event-store",
        )
        self.datastore.pool = pool


def event_store_pool(recorder: Any) -> GuardedPool | None:
    """The GuardedPool behind an eventsourcing recorder, if it has one."""
    datastore = getattr(recorder, "datastore", None)
    pool = getattr(datastore, "pool", None)
    return pool if isinstance(pool, GuardedPool) else None


def watch_database(
    config: DatabaseConfig, pools: Iterable[GuardedPool | None]
) -> tuple[DatabaseMonitor, LockSession]:
    """A started monitor over ``pools`` and a lock connection it also watches (for a
    ``serve``'s relay and projection runner)."""
    monitor = DatabaseMonitor(config.conninfo())
    locks = LockSession(config.conninfo())
    locks.watch(monitor)
    for pool in pools:
        if pool is not None:
            pool.watch(monitor)
    monitor.start()
    return monitor, locks


def recorded_after(exc: BaseException) -> bool | None:
    """What a failed write left behind: False when nothing was recorded for certain,
    None when it may have been (the honest answer for a connection lost mid-commit)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, NotRecorded):
            return False
        if isinstance(seen, OutcomeUnknown):
            return None
        seen = seen.__cause__ or seen.__context__
    return None


__all__ = [
    "DatabaseUnavailable",
    "Factory",
    "GuardedPool",
    "NotRecorded",
    "OutcomeUnknown",
    "event_store_pool",
    "recorded_after",
    "watch_database",
]
