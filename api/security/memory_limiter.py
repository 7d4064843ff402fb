"""``MemoryLimiter``: rate-limit counters in this process, behind a lock (exact under
concurrency); the semantics are in api/security/ratelimit.py."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from api.security.rates import Decision, Rate, is_address

log = logging.getLogger("api.security.ratelimit")  # the rate limits' one logger, as before


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
