"""Rate limits over HTTP on the real app (SQLite: in-process counters; PostgreSQL: counters
shared by every replica), and the shared counters themselves under concurrency."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from litestar.testing import AsyncTestClient, TestClient

from api.http.app import create_app
from api.runtime import Runtime
from api.security.ratelimit import PostgresLimiter, Rate
from api.settings import Settings
from commands.apikeys import ApiKeyRecord, ApiKeyService, generate_key
from commands.persistence import DatabaseConfig, prepare_database
from domain.permissions import Permission
from tests.conftest import EXAMPLE_INPUT
from tests.security_support import (
    SECRET,
    TASKS,
    api_client,
    assert_envelope,
    new_key,
)

HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")
SUBMIT = {"taskDefinitionId": "calculate-order-total", "input": EXAMPLE_INPUT}


def settings(database_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    fields: dict[str, Any] = {
        "database_url": database_url,
        "var_dir": tmp_path,
        "rate_limit": "5/minute",
        "rate_limit_bulk": "2/minute",
        "jwt_secret": SECRET,
    }
    fields.update(overrides)
    return Settings(**fields)


@pytest.fixture
def app(database_url: str, tmp_path: Path) -> Iterator[tuple[TestClient[Any], Runtime]]:
    with api_client(settings(database_url, tmp_path)) as pair:
        yield pair


def limits(response: Any) -> tuple[int, int, int]:
    limit, remaining, reset = (int(response.headers[name]) for name in HEADERS)
    return limit, remaining, reset


def test_every_response_carries_the_headers(app: tuple[TestClient[Any], Runtime]) -> None:
    client, runtime = app
    key = {"X-API-Key": new_key(runtime, Permission.TASKS_READ)}
    responses = [
        client.get(f"{TASKS}/{uuid4()}", headers=key),  # 404 from the handler
        client.get("/api/v1/nowhere", headers=key),  # 404 from the router
        client.delete(TASKS, headers=key),  # 405 from the router
        client.post(TASKS, json=SUBMIT, headers=key),  # 403 from the guard
        client.get(f"{TASKS}/{uuid4()}", headers=key),  # 404 again
    ]
    assert [r.status_code for r in responses] == [404, 404, 405, 403, 404]
    before = time.time()
    assert [limits(r)[:2] for r in responses] == [(5, 4), (5, 3), (5, 2), (5, 1), (5, 0)]
    resets = {limits(r)[2] for r in responses}
    assert len(resets) == 1  # one window
    assert before < resets.pop() <= before + 61
    limited = client.get(f"{TASKS}/{uuid4()}", headers=key)
    assert limits(limited)[:2] == (5, 0)

    unauthenticated = client.get(TASKS)  # the client address has its own budget
    assert unauthenticated.status_code == 401
    assert limits(unauthenticated)[:2] == (5, 4)
    assert client.get("/schema/openapi.json").headers["x-ratelimit-remaining"] == "3"
    # /health is not counted (load balancers probe it): no budget spent, no headers.
    assert not set(HEADERS) & set(client.get("/health").headers)
    assert limits(client.get(TASKS))[:2] == (5, 2)


def test_over_the_limit_is_429_in_the_envelope_with_retry_after(
    app: tuple[TestClient[Any], Runtime],
) -> None:
    client, runtime = app
    key = {"X-API-Key": new_key(runtime)}
    for _ in range(5):
        assert client.post(TASKS, json=SUBMIT, headers=key).status_code == 201
    before = runtime.service.recorder.max_notification_id()
    response = client.post(TASKS, json=SUBMIT, headers=key)
    error = assert_envelope(response, 429, "RATE_LIMITED")
    assert error["details"]["limit"] == 5 and error["details"]["period"] == 60
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= 60
    limit, remaining, reset = limits(response)
    assert (limit, remaining) == (5, 0)
    assert error["details"]["reset"] == reset
    assert runtime.service.recorder.max_notification_id() == before  # nothing recorded


def test_each_principal_has_its_own_budget(app: tuple[TestClient[Any], Runtime]) -> None:
    client, runtime = app
    first, second = ({"X-API-Key": new_key(runtime)} for _ in range(2))
    for _ in range(5):
        client.get(TASKS, headers=first)
    assert client.get(TASKS, headers=first).status_code == 429
    assert client.get(TASKS, headers=second).status_code == 200
    token = _token("someone")
    assert client.get(TASKS, headers=token).status_code == 200
    assert limits(client.get(TASKS, headers=token))[1] == 3


def test_before_authentication_the_budget_is_the_client_address(
    app: tuple[TestClient[Any], Runtime],
) -> None:
    client, runtime = app
    known = {"X-API-Key": new_key(runtime)}
    assert client.get(TASKS, headers=known).status_code == 200  # its own budget, not the address's
    for _ in range(5):
        assert client.get(TASKS, headers={"X-API-Key": "tex_wrong"}).status_code == 401
    assert_envelope(client.get(TASKS), 429, "RATE_LIMITED")  # same address, no credentials
    assert_envelope(client.get("/schema/openapi.json"), 429, "RATE_LIMITED")  # open, counted
    assert client.get("/health").status_code != 429  # never counted
    # An authenticated caller from that address spends its own budget.
    assert limits(client.get(TASKS, headers=known))[:2] == (5, 3)
    assert client.get(TASKS, headers=_token("someone")).status_code == 200
    # A key this process has not loaded yet costs a lookup, which the address pays for.
    assert_envelope(client.get(TASKS, headers={"X-API-Key": new_key(runtime)}), 429, "RATE_LIMITED")


def test_an_address_over_budget_costs_no_key_lookups(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Random well-formed keys from one address: once its budget is spent, the gate answers
    429 before authenticating, so the event store is not read for them any more."""
    looked_up: list[str] = []
    get = ApiKeyService.get

    def spy(self: ApiKeyService, key_id: str) -> ApiKeyRecord | None:
        looked_up.append(key_id)
        return get(self, key_id)

    monkeypatch.setattr(ApiKeyService, "get", spy)
    with api_client(settings(database_url, tmp_path)) as (client, _):
        keys = [generate_key() for _ in range(50)]
        statuses = [client.get(TASKS, headers={"X-API-Key": key}).status_code for _, key in keys]
    assert statuses == [401] * 5 + [429] * 45
    assert len([key_id for key_id in looked_up if key_id in dict(keys)]) <= 5


def test_health_is_never_rate_limited(app: tuple[TestClient[Any], Runtime]) -> None:
    """Load balancers probe /health, often all from one proxy address: it is not counted;
    nor are /health/live and /health/ready."""
    client, _ = app
    for probe in ("/health", "/health/live", "/health/ready") * 4:
        response = client.get(probe, headers={"X-API-Key": generate_key()[1]})
        assert response.status_code != 429
        assert not set(HEADERS) & set(response.headers)
    assert limits(client.get(TASKS))[:2] == (5, 4)  # the address's budget is untouched
    assert not set(HEADERS) & set(client.get("/health/").headers)  # as the router matches it


def test_bulk_has_its_own_smaller_budget(app: tuple[TestClient[Any], Runtime]) -> None:
    client, runtime = app
    key = {"X-API-Key": new_key(runtime)}
    bulk = {"tasks": [SUBMIT, SUBMIT]}
    first = client.post(f"{TASKS}/bulk", json=bulk, headers=key)
    assert first.status_code == 200 and limits(first)[:2] == (2, 1)
    assert client.post(f"{TASKS}/bulk", json=bulk, headers=key).status_code == 200
    assert_envelope(client.post(f"{TASKS}/bulk", json=bulk, headers=key), 429, "RATE_LIMITED")
    # The default budget was not touched by bulk requests.
    assert limits(client.get(TASKS, headers=key))[:2] == (5, 4)


def test_off_disables_limits_and_headers(database_url: str, tmp_path: Path) -> None:
    with api_client(settings(database_url, tmp_path, rate_limit="off", rate_limit_bulk="off")) as (
        client,
        runtime,
    ):
        key = {"X-API-Key": new_key(runtime)}
        for _ in range(12):
            response = client.get(TASKS, headers=key)
            assert response.status_code == 200
            assert not set(HEADERS) & set(response.headers)


@pytest.mark.parametrize("value", ["100", "100/fortnight", "0/minute", "-1/minute", "lots"])
def test_a_bad_setting_is_refused_at_start(tmp_path: Path, value: str) -> None:
    with pytest.raises(ValueError, match="TASKEXEC_RATE_LIMIT"):
        Runtime.open(Settings(database_url=f"sqlite:///{tmp_path}/x.db", rate_limit=value))
    with pytest.raises(ValueError, match="TASKEXEC_RATE_LIMIT_BULK"):
        Runtime.open(Settings(database_url=f"sqlite:///{tmp_path}/x.db", rate_limit_bulk=value))


async def test_concurrent_requests_are_counted_exactly(database_url: str, tmp_path: Path) -> None:
    runtime = Runtime.open(settings(database_url, tmp_path, rate_limit="10/minute"))
    async with AsyncTestClient(app=create_app(runtime, None)) as client:
        key = {"X-API-Key": await asyncio.to_thread(new_key, runtime)}
        responses = await asyncio.gather(
            *[client.get(f"{TASKS}/{uuid4()}", headers=key) for _ in range(40)]
        )
    allowed = [r for r in responses if r.status_code != 429]
    assert len(allowed) == 10
    assert all(r.status_code == 404 for r in allowed)
    assert sorted(int(r.headers["x-ratelimit-remaining"]) for r in allowed) == list(range(10))
    assert all(r.headers["x-ratelimit-remaining"] == "0" for r in responses if r not in allowed)


async def test_replicas_share_counters_in_postgresql(postgres_url: str) -> None:
    """Two limiters (two API replicas) on one database: the limit holds across both."""
    config = DatabaseConfig.from_url(postgres_url)
    prepare_database(config)
    # 80 hits at once on two pools of 4: on a loaded machine a checkout can pass the
    # production budget (0.2 s), and the breaker would count in memory instead (what
    # another test checks). Here the budget is generous: this test is about sharing.
    replicas = [PostgresLimiter(config.conninfo(), timeout=5.0) for _ in range(2)]
    for replica in replicas:
        await replica.open()
    try:
        rate = Rate(limit=25, period=60)
        decisions = await asyncio.gather(
            *[replicas[i % 2].hit("default|apikey:abc", rate) for i in range(80)]
        )
        other = await replicas[0].hit("default|apikey:def", rate)
    finally:
        for replica in replicas:
            await replica.close()
    assert sum(d.allowed for d in decisions) == 25
    assert sorted(d.count for d in decisions) == list(range(1, 81))  # no lost update
    assert len({d.reset for d in decisions}) == 1  # one window, one clock (the database's)
    assert (other.count, other.allowed) == (1, True)
    assert sum(r.fallbacks for r in replicas) == 0


async def test_a_new_window_starts_when_the_old_one_ends(postgres_url: str) -> None:
    config = DatabaseConfig.from_url(postgres_url)
    prepare_database(config)
    limiter = PostgresLimiter(config.conninfo())
    await limiter.open()
    try:
        rate = Rate(limit=2, period=60)
        first = [await limiter.hit("k", rate) for _ in range(3)]
        with psycopg.connect(config.conninfo(), autocommit=True) as conn:  # a minute passes
            conn.execute("UPDATE taskexec_rate_limits SET window_start = window_start - 61")
        later = await limiter.hit("k", rate)
    finally:
        await limiter.close()
    assert [d.allowed for d in first] == [True, True, False]
    assert (later.count, later.allowed, later.remaining) == (1, True, 1)
    assert later.window_start > first[0].window_start


async def test_when_the_database_fails_limits_still_hold_in_memory(postgres_url: str) -> None:
    config = DatabaseConfig.from_url(postgres_url)
    prepare_database(config)
    limiter = PostgresLimiter(config.conninfo())
    await limiter.open()
    try:
        rate = Rate(limit=3, period=60)
        assert (await limiter.hit("k", rate)).count == 1
        with psycopg.connect(config.conninfo(), autocommit=True) as conn:
            conn.execute("DROP TABLE taskexec_rate_limits")
        fallen_back = [await limiter.hit("k", rate) for _ in range(4)]
    finally:
        await limiter.close()
    assert limiter.fallbacks == 4
    assert [d.allowed for d in fallen_back] == [True, True, True, False]


async def test_a_slow_database_opens_a_breaker_and_counting_returns_later(
    postgres_url: str,
) -> None:
    """The limiter's table is locked: the first request waits ``timeout`` and falls back;
    the following ones do not try the database until the breaker's time has passed."""
    config = DatabaseConfig.from_url(postgres_url)
    prepare_database(config)
    clock = [1000.0]
    limiter = PostgresLimiter(
        config.conninfo(), timeout=0.2, breaker_seconds=10, monotonic=lambda: clock[0]
    )
    await limiter.open()
    rate = Rate(limit=100, period=60)
    try:
        assert (await limiter.hit("k", rate)).count == 1
        assert limiter.attempts == 1
        with psycopg.connect(config.conninfo()) as locker:  # a transaction holding the lock
            locker.execute("LOCK TABLE taskexec_rate_limits IN ACCESS EXCLUSIVE MODE")
            await limiter.hit("k", rate)  # waits for the lock (200 ms), then memory
            assert (limiter.attempts, limiter.fallbacks, limiter.breaker_open) == (2, 1, True)
            for _ in range(20):
                await limiter.hit("k", rate)
            assert (limiter.attempts, limiter.fallbacks) == (2, 21)  # the database left alone
            clock[0] += 10.5
            await limiter.hit("k", rate)  # one request tries again: still locked
            assert (limiter.attempts, limiter.fallbacks, limiter.breaker_open) == (3, 22, True)
            await limiter.hit("k", rate)
            assert limiter.attempts == 3
            locker.rollback()
        await limiter.hit("k", rate)  # the breaker's time has not passed yet
        assert limiter.attempts == 3
        clock[0] += 10.5
        back = await limiter.hit("k", rate)
        assert (limiter.attempts, limiter.fallbacks, limiter.breaker_open) == (4, 24, False)
        assert back.count == 2  # counted in the database again, where it left off
        assert (await limiter.hit("k", rate)).count == 3
        assert limiter.attempts == 5
    finally:
        await limiter.close()


def _token(subject: str) -> dict[str, str]:
    from joserfc import jwt
    from joserfc.jwk import OctKey

    from tests.security_support import claims

    token = jwt.encode(
        {"alg": "HS256"},
        claims(sub=subject, iss=None, aud=None),
        OctKey.import_key(SECRET.encode()),
    )
    return {"Authorization": f"Bearer {token}"}


async def test_replicas_starting_together_share_one_table(postgres_url: str) -> None:
    config = DatabaseConfig.from_url(postgres_url)
    prepare_database(config)
    replicas = [PostgresLimiter(config.conninfo()) for _ in range(4)]
    await asyncio.gather(*[replica.open() for replica in replicas])
    try:
        rate = Rate(limit=3, period=60)
        decisions = [await replica.hit("k", rate) for replica in replicas]
    finally:
        await asyncio.gather(*[replica.close() for replica in replicas])
    assert [d.count for d in decisions] == [1, 2, 3, 4]
    assert sum(r.fallbacks for r in replicas) == 0
