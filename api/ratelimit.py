"""Rate limits: a fixed window per (bucket, caller), opened by the caller's first request.

A window of ``period`` seconds starts with a caller's first request; every request in it
counts, and the ``limit``-th is the last one allowed. ``X-RateLimit-Reset`` is the window's
end (unix time). Two stores with the same semantics:

- ``MemoryLimiter``: counters in this process (behind a lock: exact under concurrency).
- ``PostgresLimiter``: counters in one UNLOGGED table shared by every API replica; each
  request is one atomic ``INSERT … ON CONFLICT DO UPDATE … RETURNING`` in autocommit
  (a row lock serialises a caller's concurrent requests, so counts are exact across
  replicas; the database clock is the only clock). If the database cannot answer, the
  request is counted in memory instead (logged), so limits hold per replica meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)

_RATE = re.compile(r"\s*(\d+)\s*/\s*(second|minute|hour|day)s?\s*")
_PERIODS = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}


@dataclass(frozen=True)
class Rate:
    limit: int
    period: float  # seconds

    @classmethod
    def parse(cls, text: str) -> Rate | None:
        """``100/minute`` (also second, hour, day); ``off`` disables: None."""
        if text.strip().lower() == "off":
            return None
        match = _RATE.fullmatch(text.lower())
        if match is None or int(match.group(1)) < 1:
            raise ValueError(f"rate limit {text!r}: use N/second|minute|hour|day (N >= 1) or off")
        return cls(limit=int(match.group(1)), period=_PERIODS[match.group(2)])

    def __str__(self) -> str:
        return f"{self.limit} requests per {self.period:g} s"


@dataclass(frozen=True)
class Decision:
    """One request counted: allowed or not, and what the headers say."""

    rate: Rate
    count: int
    window_start: float
    now: float

    @property
    def allowed(self) -> bool:
        return self.count <= self.rate.limit

    @property
    def remaining(self) -> int:
        return max(0, self.rate.limit - self.count)

    @property
    def reset(self) -> int:
        return math.ceil(self.window_start + self.rate.period)

    @property
    def retry_after(self) -> int:
        return max(1, math.ceil(self.window_start + self.rate.period - self.now))

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [
            (b"x-ratelimit-limit", str(self.rate.limit).encode()),
            (b"x-ratelimit-remaining", str(self.remaining).encode()),
            (b"x-ratelimit-reset", str(self.reset).encode()),
        ]


class Limiter(Protocol):
    async def open(self) -> None: ...

    async def hit(self, key: str, rate: Rate) -> Decision: ...

    async def close(self) -> None: ...


class MemoryLimiter:
    """Counters in this process."""

    def __init__(self, clock: Callable[[], float] = time.time, max_keys: int = 100_000) -> None:
        self._clock = clock
        self._max_keys = max_keys
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[float, int, float]] = {}  # key -> (start, count, period)

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def hit(self, key: str, rate: Rate) -> Decision:
        return self.hit_now(key, rate)

    def hit_now(self, key: str, rate: Rate) -> Decision:
        with self._lock:
            now = self._clock()
            start, count, _ = self._windows.get(key, (now, 0, rate.period))
            if start + rate.period <= now:
                start, count = now, 0
            count += 1
            self._windows[key] = (start, count, rate.period)
            if len(self._windows) > self._max_keys:
                self._prune(now)
        return Decision(rate=rate, count=count, window_start=start, now=now)

    def _prune(self, now: float) -> None:
        ended = [k for k, (start, _, period) in self._windows.items() if start + period <= now]
        for key in ended:
            del self._windows[key]
        while len(self._windows) > self._max_keys:  # still full of live windows: oldest go
            del self._windows[next(iter(self._windows))]


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


class PostgresLimiter:
    """Counters shared by every replica using the same PostgreSQL database (and schema)."""

    def __init__(
        self,
        conninfo: str,
        fallback: MemoryLimiter | None = None,
        pool_size: int = 4,
        prune_every: float = 60.0,
    ) -> None:
        self._conninfo = conninfo
        self._fallback = fallback or MemoryLimiter()
        self._pool_size = pool_size
        self._prune_every = prune_every
        self._pool: AsyncConnectionPool[Any] | None = None
        self._longest = 0.0
        self._pruned_at = time.monotonic()
        self._warned_at = -math.inf
        self.fallbacks = 0  # requests counted in memory because the database failed

    async def open(self) -> None:
        self._pool = AsyncConnectionPool(
            self._conninfo,
            min_size=1,
            max_size=self._pool_size,
            kwargs={"autocommit": True},
            configure=_configure,
            open=False,
            timeout=2.0,
        )
        await self._pool.open()
        async with self._pool.connection() as conn:
            # Two replicas creating the table at the same moment: one loses, harmlessly.
            with contextlib.suppress(psycopg.errors.UniqueViolation):
                await conn.execute(_CREATE)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def hit(self, key: str, rate: Rate) -> Decision:
        self._longest = max(self._longest, rate.period)
        if self._pool is None:  # not opened (an app run without its lifespan)
            return self._fall_back(key, rate, RuntimeError("PostgresLimiter not opened"))
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(_HIT, {"key": key, "period": rate.period})
                row = await cur.fetchone()
                assert row is not None
                if time.monotonic() - self._pruned_at >= self._prune_every:
                    self._pruned_at = time.monotonic()
                    await conn.execute(_PRUNE, {"longest": self._longest})
        except (psycopg.Error, OSError, TimeoutError) as exc:
            return self._fall_back(key, rate, exc)
        hits, window_start, now = row
        return Decision(rate=rate, count=int(hits), window_start=float(window_start), now=now)

    def _fall_back(self, key: str, rate: Rate, exc: BaseException) -> Decision:
        self.fallbacks += 1
        if time.monotonic() - self._warned_at >= 60:
            self._warned_at = time.monotonic()
            log.warning("rate limits: database unavailable (%r); counting in memory", exc)
        return self._fallback.hit_now(key, rate)


async def _configure(conn: psycopg.AsyncConnection[Any]) -> None:
    # Counters need no durability and must never hold a request up for long.
    await conn.execute("SET synchronous_commit = off")
    await conn.execute("SET statement_timeout = '2s'")
    await conn.execute("SET lock_timeout = '2s'")


class RateLimits:
    """The two buckets of the spec: every request, and bulk operations."""

    def __init__(self, limiter: Limiter, default: Rate | None, bulk: Rate | None) -> None:
        self.limiter = limiter
        self.default = default
        self.bulk = bulk

    async def hit(self, bucket: str, caller: str) -> Decision | None:
        """Count one request of ``caller`` in ``bucket``; None when that bucket is off."""
        rate = self.bulk if bucket == "bulk" else self.default
        if rate is None:
            return None
        return await self.limiter.hit(f"{bucket}|{caller}", rate)
