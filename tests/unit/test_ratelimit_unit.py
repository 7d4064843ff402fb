"""Pure logic of rate limits: parsing, the window arithmetic, the in-memory counters."""

from __future__ import annotations

import pytest

from api.security.gate import bucket_of, is_counted, is_open
from api.security.memory_limiter import MemoryLimiter
from api.security.rates import Decision, Rate
from tests.fakes import FakeClock


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
    assert is_open("/health/live") and is_open("/health/ready/")
    assert not is_open("/healthz") and not is_open("/schemas") and not is_open("/api/v1/tasks")
    assert not is_open("/health/other") and not is_open("/metrics")
    assert not is_counted("/health/live") and not is_counted("//health/ready")
    assert is_counted("/metrics") and is_counted("/health/x")


def test_a_refused_principal_stays_refused_however_many_addresses_come() -> None:
    """Full of live windows: address windows make room, a principal's window is never reset."""
    clock = FakeClock(0.0)
    limiter = MemoryLimiter(clock=clock, max_keys=10)
    rate = Rate(2, 60)
    principal = "default|apikey:0123456789abcdef"
    assert [limiter.hit_now(principal, rate).allowed for _ in range(3)] == [True, True, False]
    for n in range(1000):
        clock.now = n * 0.01  # all windows live
        limiter.hit_now(f"default|addr:10.0.{n // 256}.{n % 256}", rate)
    assert not limiter.hit_now(principal, rate).allowed
    assert len(limiter._windows) <= 10
    assert limiter.evicted >= 990


def test_live_principal_windows_are_kept_past_the_bound() -> None:
    clock = FakeClock(0.0)
    limiter = MemoryLimiter(clock=clock, max_keys=5)
    rate = Rate(1, 60)
    principals = [f"default|jwt:user-{n}" for n in range(8)]
    assert all(limiter.hit_now(p, rate).allowed for p in principals)
    assert not any(limiter.hit_now(p, rate).allowed for p in principals)  # none was reset
    clock.now = 61.0  # all ended: dropped as new windows come, the bound holds again
    for n in range(10):
        limiter.hit_now(f"default|addr:10.0.0.{n}", rate)
    assert len(limiter._windows) <= 5


@pytest.mark.parametrize("ended", [True, False])
def test_each_hit_examines_a_bounded_number_of_windows(ended: bool) -> None:
    """No scan of the whole table when it is full, of ended windows or of live ones."""
    clock = FakeClock(0.0)
    limiter = MemoryLimiter(clock=clock, max_keys=1000)
    rate, bulk = Rate(5, 60), Rate(2, 3600)
    for n in range(1000):
        limiter.hit_now(f"default|addr:a{n}", rate)
    clock.now = 61.0 if ended else 30.0
    most = 0
    for n in range(5000):
        before = limiter.examined + limiter.evicted
        limiter.hit_now(f"{'bulk' if n % 2 else 'default'}|addr:b{n}", bulk if n % 2 else rate)
        limiter.hit_now(f"default|apikey:{n % 7}", rate)
        most = max(most, limiter.examined + limiter.evicted - before)
        assert len(limiter._windows) <= 1000
    # Two hits, each: <= 2 per queue (4 queues) to expire, <= 2 to pick and 1 to evict.
    assert most <= 2 * (2 * 4 + 3)
