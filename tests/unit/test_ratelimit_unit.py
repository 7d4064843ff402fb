"""Pure logic of rate limits: parsing, the window arithmetic, the in-memory counters."""

from __future__ import annotations

import pytest

from api.gate import bucket_of, is_open
from api.ratelimit import Decision, MemoryLimiter, Rate


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("100/minute", Rate(100, 60)),
        ("20/minutes", Rate(20, 60)),
        (" 5 / second ", Rate(5, 1)),
        ("1000/hour", Rate(1000, 3600)),
        ("1/day", Rate(1, 86400)),
        ("OFF", None),
        ("off", None),
    ],
)
def test_rates_parse(text: str, rate: Rate | None) -> None:
    assert Rate.parse(text) == rate


@pytest.mark.parametrize("text", ["", "100", "0/minute", "1/fortnight", "x/minute", "1.5/second"])
def test_bad_rates_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="N/second"):
        Rate.parse(text)


def test_decision_arithmetic() -> None:
    rate = Rate(10, 60)
    first = Decision(rate, count=1, window_start=1000.2, now=1000.2)
    assert (first.allowed, first.remaining, first.reset, first.retry_after) == (True, 9, 1061, 60)
    last = Decision(rate, count=10, window_start=1000.0, now=1059.5)
    assert (last.allowed, last.remaining, last.retry_after) == (True, 0, 1)
    over = Decision(rate, count=11, window_start=1000.0, now=1030.0)
    assert (over.allowed, over.remaining, over.retry_after) == (False, 0, 30)
    assert dict(over.headers()) == {
        b"x-ratelimit-limit": b"10",
        b"x-ratelimit-remaining": b"0",
        b"x-ratelimit-reset": b"1060",
    }


def test_a_window_opens_with_the_first_request_and_ends_after_the_period() -> None:
    clock = FakeClock(1000.0)
    limiter = MemoryLimiter(clock=clock)
    rate = Rate(2, 60)
    assert [limiter.hit_now("a", rate).allowed for _ in range(3)] == [True, True, False]
    assert limiter.hit_now("b", rate).allowed  # another caller, another window
    clock.now = 1059.9
    assert not limiter.hit_now("a", rate).allowed
    clock.now = 1060.0
    fresh = limiter.hit_now("a", rate)
    assert (fresh.count, fresh.window_start, fresh.reset) == (1, 1060.0, 1120)


def test_memory_stays_bounded() -> None:
    clock = FakeClock(0.0)
    limiter = MemoryLimiter(clock=clock, max_keys=10)
    rate = Rate(1, 60)
    for n in range(10):
        limiter.hit_now(f"old-{n}", rate)
    clock.now = 61.0  # all those windows ended
    for n in range(5):
        limiter.hit_now(f"new-{n}", rate)
    limiter.hit_now("one-more", rate)
    limiter.hit_now("and-another", rate)
    assert len(limiter._windows) <= 10
    assert not limiter.hit_now("new-0", rate).allowed  # live windows are kept


def test_buckets_and_open_paths() -> None:
    assert bucket_of("POST", "/api/v1/tasks/bulk") == "bulk"
    assert bucket_of("POST", "/api/v1/tasks/bulk/") == "bulk"
    assert bucket_of("GET", "/api/v1/tasks/bulk") == "default"
    assert bucket_of("POST", "/api/v1/tasks") == "default"
    assert is_open("/health") and is_open("/schema") and is_open("/schema/openapi.json")
    assert not is_open("/healthz") and not is_open("/schemas") and not is_open("/api/v1/tasks")
