"""Rate limits: a fixed window per (bucket, caller), opened by the caller's first request.

A window of ``period`` seconds starts with a caller's first request; every request in it
counts, and the ``limit``-th is the last one allowed. ``X-RateLimit-Reset`` is the window's
end (unix time). Two stores with the same semantics:

- ``MemoryLimiter``: counters in this process (behind a lock: exact under concurrency).
- ``PostgresLimiter``: counters in one UNLOGGED table shared by every API replica; each
  request is one atomic ``INSERT … ON CONFLICT DO UPDATE … RETURNING`` in autocommit
  (a row lock serialises a caller's concurrent requests, so counts are exact across
  replicas; the database clock is the only clock). If the database cannot answer within
  ``timeout`` (200 ms), the request is counted in memory instead (logged), and so are the
  following ones for ``breaker_seconds`` (a circuit breaker), so limits hold per replica
  meanwhile and a slow database does not slow every request down.

``RateLimits`` also remembers, in this process, callers whose budget is used up until their
window ends, so the gate can refuse an exhausted client address before looking up the
credential it sent (``exhausted``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import threading
import time
from collections import OrderedDict
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


def is_address(key: str) -> bool:
    """A key counting an unauthenticated client address (``<bucket>|addr:…``)."""
    return key.partition("|")[2].startswith("addr:") or key.startswith("addr:")


class MemoryLimiter:
    """Counters in this process, at most ``max_keys`` windows (plus live principals' windows).

    Windows of one kind (client address or principal) and one period sit in an OrderedDict
    in the order they opened (a window that restarts moves to the end), so the front is
    always the first to end: each hit drops at most two ended windows from the front of
    each queue, O(1) per hit, never a scan. When full of live windows, the oldest *address*
    window goes (that address starts counting afresh). A live principal window is never
    dropped: past ``max_keys`` of them the limiter grows, and says so in the log (their
    number is bounded by the keys and tokens actually issued). ``examined`` counts the
    entries looked at to expire or evict, for tests.
    """

    _DRAIN = 2  # ended windows dropped per queue per hit: more than the one a hit can add

    def __init__(self, clock: Callable[[], float] = time.time, max_keys: int = 100_000) -> None:
        self._clock = clock
        self._max_keys = max_keys
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[float, int, float]] = {}  # key -> (start, count, period)
        # (is an address, period) -> keys in the order their windows opened
        self._queues: dict[tuple[bool, float], OrderedDict[str, None]] = {}
        self._warned_at = -math.inf
        self.examined = 0
        self.evicted = 0

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def hit(self, key: str, rate: Rate) -> Decision:
        return self.hit_now(key, rate)

    def hit_now(self, key: str, rate: Rate) -> Decision:
        with self._lock:
            now = self._clock()
            self._expire(now)
            window = self._windows.get(key)
            if window is not None and window[2] != rate.period:  # the key's rate changed
                self._forget(key, window[2])
                window = None
            if window is None:
                if len(self._windows) >= self._max_keys:
                    self._make_room(now)
                start, count = now, 1
                self._queue(is_address(key), rate.period)[key] = None
            else:
                start, count, _ = window
                if start + rate.period <= now:  # ended: a new window, last to end
                    start, count = now, 0
                    self._queue(is_address(key), rate.period).move_to_end(key)
                count += 1
            self._windows[key] = (start, count, rate.period)
        return Decision(rate=rate, count=count, window_start=start, now=now)

    def _queue(self, address: bool, period: float) -> OrderedDict[str, None]:
        queue = self._queues.get((address, period))
        if queue is None:
            queue = self._queues[(address, period)] = OrderedDict()
        return queue

    def _forget(self, key: str, period: float) -> None:
        del self._windows[key]
        del self._queues[(is_address(key), period)][key]

    def _expire(self, now: float) -> None:
        for (_, period), queue in self._queues.items():
            for _ in range(self._DRAIN):
                if not queue:
                    break
                key = next(iter(queue))
                self.examined += 1
                if self._windows[key][0] + period > now:
                    break
                queue.popitem(last=False)
                del self._windows[key]

    def _make_room(self, now: float) -> None:
        """Full: the oldest address window goes (a live one if need be), never a principal's."""
        oldest: tuple[float, OrderedDict[str, None]] | None = None
        for (address, _), queue in self._queues.items():
            if address and queue:
                self.examined += 1
                start = self._windows[next(iter(queue))][0]
                if oldest is None or start < oldest[0]:
                    oldest = (start, queue)
        if oldest is not None:
            key, _ = oldest[1].popitem(last=False)
            del self._windows[key]
            self.evicted += 1
            return
        if now - self._warned_at >= 60:
            self._warned_at = now
            log.warning(
                "rate limits: %d live principal windows, more than the %d planned; "
                "keeping them all",
                len(self._windows),
                self._max_keys,
            )


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
                await conn.execute("SET LOCAL statement_timeout = 2000")
                await conn.execute("SET LOCAL lock_timeout = 2000")
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
        # Counters need no durability and must never hold a request up for long.
        milliseconds = max(1, round(self._timeout * 1000))
        await conn.execute("SET synchronous_commit = off")
        await conn.execute(f"SET statement_timeout = {milliseconds}")
        await conn.execute(f"SET lock_timeout = {milliseconds}")


class RateLimits:
    """The two buckets of the spec: every request, and bulk operations."""

    def __init__(
        self,
        limiter: Limiter,
        default: Rate | None,
        bulk: Rate | None,
        max_exhausted: int = 10_000,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limiter = limiter
        self.default = default
        self.bulk = bulk
        self._max_exhausted = max_exhausted
        self._monotonic = monotonic
        # "<bucket>|<caller>" -> (the decision that used the budget up, when, monotonic)
        self._exhausted: OrderedDict[str, tuple[Decision, float]] = OrderedDict()

    async def hit(self, bucket: str, caller: str) -> Decision | None:
        """Count one request of ``caller`` in ``bucket``; None when that bucket is off."""
        rate = self.bulk if bucket == "bulk" else self.default
        if rate is None:
            return None
        key = f"{bucket}|{caller}"
        decision = await self.limiter.hit(key, rate)
        if decision.remaining == 0:  # the next request in this window will be refused
            self._exhausted[key] = (decision, self._monotonic())
            self._exhausted.move_to_end(key)
            while len(self._exhausted) > self._max_exhausted:
                self._exhausted.popitem(last=False)
        return decision

    def exhausted(self, bucket: str, caller: str) -> Decision | None:
        """If ``caller``'s budget in ``bucket`` is known (here) to be used up: the refusal to
        answer with, without counting. None when it has budget left, or might have."""
        key = f"{bucket}|{caller}"
        entry = self._exhausted.get(key)
        if entry is None:
            return None
        decision, at = entry
        now = decision.now + (self._monotonic() - at)  # on the limiter's clock
        if now >= decision.window_start + decision.rate.period:
            del self._exhausted[key]
            return None
        return Decision(
            rate=decision.rate,
            count=max(decision.count, decision.rate.limit) + 1,
            window_start=decision.window_start,
            now=now,
        )
