"""Rate-limit values: a ``Rate`` (``100/minute``), the ``Decision`` on one request (and its
``X-RateLimit-*`` headers), and the ``Limiter`` protocol both stores implement
(api/security/memory_limiter.py, api/security/postgres_limiter.py)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Protocol

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
