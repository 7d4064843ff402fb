"""The checks of ``/health``: can the database answer, can JetStream serve our streams?

An open TCP connection proves little: a cluster that lost its quorum, or a stream
whose leader died and is not re-elected yet, accepts the connection and refuses the
work (publishes time out, pulls get nothing). ``JetStreamHealth`` asks for the info of
the streams a ``serve`` replica cannot do without (``TASK_WORK``: the relay publishes
work there; ``TASK_RESULTS``: the results consumer pulls from it) with a short timeout,
and calls NATS ready only when each answers and has a leader. The answer is kept for a
second: load balancers probe often, and a probe is one round trip per stream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

import anyio.from_thread
from nats.aio.client import Client
from nats.js import JetStreamContext

from commands.db_monitor import DatabaseUnavailable
from projections.db import Database
from workers.protocol import RESULTS_STREAM, WORK_STREAM
from workers.stream_state import StreamState

log = logging.getLogger(__name__)

CHECK_TIMEOUT_S = 1.0
CACHE_S = 1.0
STREAMS = (WORK_STREAM, RESULTS_STREAM)


def database_ok(db: Database) -> bool:
    """The read models' database answers a query (blocking: call it from a thread)."""
    try:
        db.ping()
    except DatabaseUnavailable:  # the monitor has logged the outage
        return False
    except Exception:
        log.exception("health: database check failed")
        return False
    return True


class JetStreamHealth:
    """Whether every stream in ``streams`` answers within ``timeout_s`` with a leader;
    each answer is reused for ``cache_s``. Changes are logged once (WARNING, INFO)."""

    def __init__(
        self,
        nc: Client,
        streams: Sequence[str] = STREAMS,
        timeout_s: float = CHECK_TIMEOUT_S,
        cache_s: float = CACHE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._nc = nc
        self._streams = tuple(streams)
        self._timeout_s = timeout_s
        self._cache_s = cache_s
        self._clock = clock
        self._state = StreamState("health: JetStream streams", log, clock)
        self._checked_at: float | None = None
        self._ready = False
        self._lock: asyncio.Lock | None = None

    async def ready(self) -> bool:
        """The cached answer if fresh, else a new check (one at a time: concurrent
        probes wait for the one in flight and share its answer)."""
        if self._fresh():
            return self._ready
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if not self._fresh():
                self._ready = await self._check()
                self._checked_at = self._clock()
        return self._ready

    def ready_from_thread(self) -> bool:
        """``ready()`` from a thread that anyio started (as ``/health`` calls
        ``Runtime.health``): the check runs on the event loop that owns the client."""
        return anyio.from_thread.run(self.ready)

    def _fresh(self) -> bool:
        return self._checked_at is not None and self._clock() - self._checked_at < self._cache_s

    async def _check(self) -> bool:
        nc = self._nc
        if not nc.is_connected:  # reconnecting: a request would time out
            self._state.failed("not connected")
            return False
        js = nc.jetstream()
        try:
            problems = await asyncio.wait_for(
                asyncio.gather(*(_leaderless(js, name) for name in self._streams)),
                self._timeout_s,
            )
        except TimeoutError:
            self._state.failed(f"no answer within {self._timeout_s:g} s")
            return False
        except Exception as exc:  # 503 (no quorum, no meta leader), no such stream, ...
            self._state.failed(exc)
            return False
        missing = [name for name in problems if name]
        if missing:
            self._state.failed(f"no leader for {', '.join(missing)}")
            return False
        self._state.ok()
        return True


async def _leaderless(js: JetStreamContext, stream: str) -> str | None:
    """``stream`` if it has no leader now, else None (a single server is its own)."""
    info = await js.stream_info(stream)
    cluster = info.cluster
    if cluster is not None and not cluster.leader:
        return stream
    return None


__all__ = ["JetStreamHealth"]
