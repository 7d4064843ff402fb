"""``PostgresLimiter``: rate-limit counters shared by every API replica (the semantics are
in api/security/ratelimit.py).

Counters live in one UNLOGGED table; each request is one atomic ``INSERT … ON CONFLICT DO
UPDATE … RETURNING`` in autocommit (a row lock serialises a caller's concurrent requests,
so counts are exact across replicas; the database clock is the only clock). If the
database cannot answer within ``timeout`` (200 ms), the request is counted in memory
instead (logged), and so are the following ones for ``breaker_seconds`` (a circuit
breaker), so limits hold per replica meanwhile and a slow database does not slow every
request down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from api.security.memory_limiter import MemoryLimiter
from api.security.rates import Decision, Rate

log = logging.getLogger("api.security.ratelimit")  # the rate limits' one logger, as before


TABLE = "taskexec_rate_limits"
_CREATE = f"""CREATE UNLOGGED TABLE IF NOT EXISTS {TABLE} (
    key TEXT PRIMARY KEY,
    window_start DOUBLE PRECISION NOT NULL,
    hits BIGINT NOT NULL
)"""
_HIT = f"""INSERT INTO {TABLE} AS r (key, window_start, hits)
VALUES (%(key)s, extract(epoch FROM clock_timestamp()), 1)
ON CONFLICT (key) DO UPDATE SET
    hits = CASE WHEN r.window_start + %(period)s <= excluded.window_start
                THEN 1 ELSE r.hits + 1 END,
    window_start = CASE WHEN r.window_start + %(period)s <= excluded.window_start
                        THEN excluded.window_start ELSE r.window_start END
RETURNING hits, window_start, extract(epoch FROM clock_timestamp())::float8 AS now"""
_PRUNE = f"""DELETE FROM {TABLE}
WHERE window_start < extract(epoch FROM clock_timestamp()) - %(longest)s"""
_PRUNE_LIMITS = ("SET LOCAL statement_timeout = 2000", "SET LOCAL lock_timeout = 2000")
# Each connection: counters need no durability and must never hold a request up for long.
_SESSION = (
    "SET synchronous_commit = off",
    "SET statement_timeout = {milliseconds}",
    "SET lock_timeout = {milliseconds}",
)


class PostgresLimiter:
    """Counters shared by every replica using the same PostgreSQL database (and schema).

    Every statement has ``timeout`` seconds (pool checkout, lock wait, statement, and a
    client-side guard). A failure or a timeout opens a circuit breaker: for
    ``breaker_seconds`` the requests are counted in this process's memory without trying
    the database; then one request tries it again (the others stay in memory meanwhile),
    and its success closes the breaker. ``attempts`` counts the requests sent to the database.
    """

    def __init__(
        self,
        conninfo: str,
        fallback: MemoryLimiter | None = None,
        pool_size: int = 4,
        prune_every: float = 60.0,
        timeout: float = 0.2,
        breaker_seconds: float = 10.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._conninfo = conninfo
        self._fallback = fallback or MemoryLimiter()
        self._pool_size = pool_size
        self._prune_every = prune_every
        self._timeout = timeout
        self._breaker_seconds = breaker_seconds
        self._monotonic = monotonic
        self._pool: AsyncConnectionPool[Any] | None = None
        self._pruning: asyncio.Task[None] | None = None
        self._longest = 0.0
        self._pruned_at = monotonic()
        self._warned_at = -math.inf
        self._open_until: float | None = None  # the breaker: None when closed
        self._probing = False
        self.fallbacks = 0  # requests counted in memory because the database failed
        self.attempts = 0  # requests sent to the database

    async def open(self) -> None:
        self._pool = AsyncConnectionPool(
            self._conninfo,
            min_size=1,
            max_size=self._pool_size,
            kwargs={"autocommit": True},
            configure=self._configure,
            open=False,
            timeout=max(self._timeout, 2.0),  # first connections at start
        )
        await self._pool.open()
        async with self._pool.connection() as conn:
            # Two replicas creating the table at the same moment: one loses, harmlessly.
            # (PostgreSQL reports the lost race as UniqueViolation, DuplicateTable, or
            # DuplicateObject for the table's row type.)
            with contextlib.suppress(
                psycopg.errors.UniqueViolation,
                psycopg.errors.DuplicateTable,
                psycopg.errors.DuplicateObject,
            ):
                await conn.execute(_CREATE)

    async def close(self) -> None:
        if self._pruning is not None:
            with contextlib.suppress(Exception):
                await self._pruning
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @property
    def breaker_open(self) -> bool:
        return self._open_until is not None

    async def hit(self, key: str, rate: Rate) -> Decision:
        self._longest = max(self._longest, rate.period)
        if self._pool is None:  # not opened (an app run without its lifespan)
            return self._fall_back(key, rate, RuntimeError("PostgresLimiter not opened"))
        probe = False
        if self._open_until is not None:
            if self._probing or self._monotonic() < self._open_until:
                return self._fall_back(key, rate, None)
            self._probing = probe = True
        self.attempts += 1
        try:
            async with asyncio.timeout(self._timeout * 2):  # if the server cannot even say no
                async with self._pool.connection(timeout=self._timeout) as conn:
                    cur = await conn.execute(_HIT, {"key": key, "period": rate.period})
                    row = await cur.fetchone()
                    assert row is not None
        except (psycopg.Error, OSError, TimeoutError) as exc:
            self._open_until = self._monotonic() + self._breaker_seconds
            return self._fall_back(key, rate, exc)
        finally:
            if probe:
                self._probing = False
        if probe:
            self._open_until = None
            log.warning("rate limits: database available again; counting there")
        if self._pruning is None and self._monotonic() - self._pruned_at >= self._prune_every:
            self._pruned_at = self._monotonic()
            self._pruning = asyncio.create_task(self._prune())
        hits, window_start, now = row
        return Decision(rate=rate, count=int(hits), window_start=float(window_start), now=now)

    async def _prune(self) -> None:
        """Drop ended windows, off the request path (a task), with 2 s of its own."""
        try:
            assert self._pool is not None
            async with self._pool.connection() as conn, conn.transaction():
                for limit in _PRUNE_LIMITS:
                    await conn.execute(limit)
                await conn.execute(_PRUNE, {"longest": self._longest})
        except (psycopg.Error, OSError, AssertionError) as exc:  # next time, then
            log.warning("rate limits: pruning ended windows failed (%r)", exc)
        finally:
            self._pruning = None

    def _fall_back(self, key: str, rate: Rate, exc: BaseException | None) -> Decision:
        self.fallbacks += 1
        if exc is not None and self._monotonic() - self._warned_at >= 60:
            self._warned_at = self._monotonic()
            log.warning(
                "rate limits: database unavailable (%r); counting in memory for %g s",
                exc,
                self._breaker_seconds,
            )
        return self._fallback.hit_now(key, rate)

    async def _configure(self, conn: psycopg.AsyncConnection[Any]) -> None:
        milliseconds = max(1, round(self._timeout * 1000))
        for setting in _SESSION:
            await conn.execute(setting.format(milliseconds=milliseconds))
