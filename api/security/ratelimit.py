"""Rate limits: a fixed window per (bucket, caller), opened by the caller's first request.

A window of ``period`` seconds starts with a caller's first request; every request in it
counts, and the ``limit``-th is the last one allowed. ``X-RateLimit-Reset`` is the window's
end (unix time). Two stores count with the same semantics: ``MemoryLimiter``, in this
process (api/security/memory_limiter.py), and ``PostgresLimiter``, in one table shared by
every API replica, counting in memory while the database does not answer
(api/security/postgres_limiter.py).

``RateLimits`` also remembers, in this process, callers whose budget is used up until their
window ends, so the gate can refuse an exhausted client address before looking up the
credential it sent (``exhausted``).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from api.security.memory_limiter import MemoryLimiter
from api.security.postgres_limiter import PostgresLimiter
from api.security.rates import Decision, Limiter, Rate, is_address

__all__ = [
    "Decision",
    "Limiter",
    "MemoryLimiter",
    "PostgresLimiter",
    "Rate",
    "RateLimits",
    "is_address",
]


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
