"""Is PostgreSQL reachable? A circuit breaker fed by a heartbeat, so that a process whose
database is gone answers at once instead of hanging.

One connection of its own (counted in the connection budget) answers ``SELECT 1`` every
``heartbeat_s``; a caller that waited too long (a stalled commit) or saw a connection
break asks for one at once (``suspect``). No answer within ``answer_within_s``, or a
failed connect: the breaker OPENS. While open:

- pools refuse to hand out connections (``DatabaseUnavailable``, nothing sent), so every
  command and read fails at once and nothing floods the database with retries;
- the connections that were in use are severed (their sockets shut down): a statement
  waiting on a silent network fails now instead of when TCP gives up (minutes);
- one probe (a fresh connection, ``connect_within_s``) runs every ``probe_s``.

The first probe that gets an answer drains the pools (their idle connections may be
dead) and CLOSES the breaker. SQLite deployments have no monitor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from eventsourcing.persistence import PersistenceError

from commands import event_store_sql as sql

log = logging.getLogger(__name__)


class DatabaseUnavailable(PersistenceError):
    """Refused without trying: the database is unreachable (the breaker is open).

    Not a psycopg error, nor one of the library's ``OperationalError`` or
    ``InterfaceError``: eventsourcing passes it on unchanged instead of retrying it ten
    times, 0.2 s apart, as it does those (its recorder's reads, ``EventStore.get``)."""


@dataclass(frozen=True)
class Timings:
    heartbeat_s: float = 0.25  # a SELECT 1 this often while all is well
    answer_within_s: float = 0.5  # ...answered within this, or the breaker opens
    probe_s: float = 0.25  # while open: a fresh connection this often (one at a time)
    connect_within_s: float = 1.0  # ...established within this
    suspect_gap_s: float = 0.1  # suspicions closer than this share one heartbeat


def sever(conn: Any) -> None:
    """Shut down ``conn``'s socket (sync or async psycopg connection), from any thread:
    whoever waits on it gets an error at once. Only a TCP or Unix socket still connected
    to the server's port is touched (never an fd number reused by something else)."""
    try:
        fd = conn.pgconn.socket
        port = int(conn.pgconn.port or 0)
    except (psycopg.Error, ValueError):
        return  # closed already
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:
        return
    with contextlib.closing(sock):
        try:
            peer = sock.getpeername()
        except OSError:
            return
        if sock.family in (socket.AF_INET, socket.AF_INET6) and peer[1] != port:
            return
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class DatabaseMonitor:
    """The breaker: ``is_open``, ``check()``, ``suspect()``; hooks for outage and recovery."""

    def __init__(self, conninfo: str, timings: Timings | None = None) -> None:
        self._conninfo = conninfo
        self.timings = timings or Timings()
        self._open = False
        self._opened_at = 0.0
        self._reason = ""
        self._on_outage: list[Callable[[], None]] = []
        self._on_recovery: list[Callable[[], None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self._suspected_at = 0.0
        self._thread = threading.Thread(target=self._main, name="db-monitor", daemon=True)
        self.outages = 0  # how many times the breaker opened (tests, logs)

    @property
    def is_open(self) -> bool:
        return self._open

    @property
    def reason(self) -> str:
        return self._reason

    def check(self) -> None:
        """Raise DatabaseUnavailable while the breaker is open."""
        if self._open:
            raise DatabaseUnavailable(f"the database is unreachable ({self._reason})")

    def on_outage(self, hook: Callable[[], None]) -> None:
        """``hook`` runs (on the monitor's thread) each time the breaker opens."""
        self._on_outage.append(hook)

    def on_recovery(self, hook: Callable[[], None]) -> None:
        """``hook`` runs (on the monitor's thread) just before the breaker closes."""
        self._on_recovery.append(hook)

    def suspect(self, why: str) -> None:
        """Thread-safe: something looked wrong; check now rather than at the next beat."""
        now = time.monotonic()
        if self._open or now - self._suspected_at < self.timings.suspect_gap_s:
            return
        self._suspected_at = now
        log.debug("database suspected: %s", why)
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closing
                loop.call_soon_threadsafe(wake.set)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(wake.set)
        self._thread.join(5)

    # -- the monitor's thread -----------------------------------------------------------

    def _main(self) -> None:
        asyncio.run(self._watch())

    async def _watch(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        conn: psycopg.AsyncConnection[Any] | None = None
        try:
            while not self._stopping:
                started = time.monotonic()
                if conn is None:
                    conn = await self._connect()
                if conn is not None and not await self._answers(conn):
                    await _close(conn)
                    conn = None
                if conn is None:
                    self._trip(self._reason)
                elif self._open:
                    self._recover()
                await self._pause(started)
        finally:
            if conn is not None:
                await _close(conn)

    async def _pause(self, started: float) -> None:
        assert self._wake is not None
        if self._open:  # probing: one attempt per probe_s, never two at once
            delay = self.timings.probe_s - (time.monotonic() - started)
            if delay > 0:
                await asyncio.sleep(delay)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self.timings.heartbeat_s)
        self._wake.clear()

    async def _connect(self) -> psycopg.AsyncConnection[Any] | None:
        # Cancelling a connect attempt is clean (no query to cancel): a real 1 s bound,
        # where psycopg's own connect_timeout cannot go below 2 s.
        try:
            return await asyncio.wait_for(
                psycopg.AsyncConnection.connect(self._conninfo, autocommit=True),
                self.timings.connect_within_s,
            )
        except (psycopg.Error, OSError, TimeoutError) as exc:
            self._reason = f"cannot connect: {_short(exc)}"
            return None

    async def _answers(self, conn: psycopg.AsyncConnection[Any]) -> bool:
        # Not wait_for: cancelling a running query makes psycopg send a cancel request
        # and wait up to 10 s for it. A silent server gets its socket shut down instead.
        beat = asyncio.ensure_future(conn.execute(sql.PING))
        done, _ = await asyncio.wait({beat}, timeout=self.timings.answer_within_s)
        if not done:
            sever(conn)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(beat), 1.0)
            if not beat.done():
                beat.cancel()
            self._reason = f"no answer to SELECT 1 within {self.timings.answer_within_s:g} s"
            return False
        try:
            beat.result()
        except (psycopg.Error, OSError) as exc:
            self._reason = f"heartbeat failed: {_short(exc)}"
            return False
        return True

    def _trip(self, reason: str) -> None:
        if self._open:
            return
        self._open = True
        self._opened_at = time.monotonic()
        self.outages += 1
        log.warning("database unreachable (%s): refusing work, probing", reason)
        for hook in self._on_outage:  # sever what hangs on the dead connections
            try:
                hook()
            except Exception:
                log.exception("database outage hook failed")

    def _recover(self) -> None:
        for hook in self._on_recovery:  # fresh connections before anyone asks for one
            try:
                hook()
            except Exception:
                log.exception("database recovery hook failed")
        self._open = False
        log.warning(
            "database reachable again after %.2f s: accepting work",
            time.monotonic() - self._opened_at,
        )


async def _close(conn: psycopg.AsyncConnection[Any]) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(conn.close(), 1.0)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
