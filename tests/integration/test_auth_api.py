"""Who may do what, over HTTP on the real app (SQLite and PostgreSQL): authentication
before anything else, the spec's permission per route, the actor on every event."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from litestar.testing import TestClient

from api.runtime import Runtime
from api.security.gate import HEALTH_PATHS
from api.settings import Settings
from commands.apikeys import ApiKeyService
from domain.permissions import ALL_PERMISSIONS, Permission
from domain.task import Task
from tests.conftest import EXAMPLE_INPUT
from tests.security_support import (
    AUDIENCE,
    ISSUER,
    OPERATOR,
    SECRET,
    TASKS,
    api_client,
    assert_envelope,
    assert_unauthorized,
    claims,
    new_key,
)

SUBMIT = {"taskDefinitionId": "calculate-order-total", "input": EXAMPLE_INPUT}
SOME_ID = "00000000-0000-4000-8000-000000000000"
# Every protected route, with the permission the spec (or docs/security.md) gives it.
ROUTES: list[tuple[str, str, Permission, Any]] = [
    ("POST", TASKS, Permission.TASKS_EXECUTE, SUBMIT),
    ("POST", f"{TASKS}/bulk", Permission.TASKS_EXECUTE, {"tasks": [SUBMIT]}),
    ("GET", f"{TASKS}/{SOME_ID}", Permission.TASKS_READ, None),
    ("POST", f"{TASKS}/{SOME_ID}/cancel", Permission.TASKS_CANCEL, {}),
    ("POST", f"{TASKS}/{SOME_ID}/retry", Permission.TASKS_RETRY, {}),
    ("GET", TASKS, Permission.TASKS_LIST, None),
    ("GET", f"{TASKS}/definitions", Permission.DEFINITIONS_LIST, None),
    ("GET", f"{TASKS}/definitions/calculate-order-total", Permission.DEFINITIONS_READ, None),
    ("GET", "/metrics", Permission.METRICS_READ, None),
]


@pytest.fixture
def app(database_url: str, tmp_path: Path) -> Iterator[tuple[TestClient[Any], Runtime]]:
    settings = Settings(
        database_url=database_url,
        var_dir=tmp_path,
        jwt_secret=SECRET,
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
        rate_limit="off",
        rate_limit_bulk="off",
    )
    with api_client(settings) as pair:
        yield pair


def call(client: TestClient[Any], method: str, path: str, body: Any, **headers: str) -> Any:
    return client.request(method, path, json=body, headers=headers)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def hs256(**overrides: Any) -> str:
    from joserfc import jwt
    from joserfc.jwk import OctKey

    return jwt.encode({"alg": "HS256"}, claims(**overrides), OctKey.import_key(SECRET.encode()))


@pytest.mark.parametrize(("method", "path", "permission", "body"), ROUTES)
def test_no_credentials_is_401_on_every_protected_route(
    app: tuple[TestClient[Any], Runtime], method: str, path: str, permission: Any, body: Any
) -> None:
    client, runtime = app
    before = runtime.service.recorder.max_notification_id()
    response = call(client, method, path, body)
    message = assert_unauthorized(response)
    assert "authentication required" in message
    assert 'ApiKey realm="taskexec"' in response.headers["www-authenticate"]
    assert runtime.service.recorder.max_notification_id() == before  # nothing recorded


def test_unknown_routes_need_credentials_too(app: tuple[TestClient[Any], Runtime]) -> None:
    client, runtime = app
    assert_unauthorized(client.get("/api/v1/nowhere"))
    key = new_key(runtime)
    assert_envelope(client.get("/api/v1/nowhere", headers={"X-API-Key": key}), 404, "NOT_FOUND")


def test_health_and_api_docs_are_open(app: tuple[TestClient[Any], Runtime]) -> None:
    client, _ = app
    assert client.get("/health").status_code == 503  # open; no NATS in this test
    assert client.get("/health/ready").status_code == 503
    assert client.get("/health/live").status_code == 200
    assert client.get("/schema/openapi.json").status_code == 200
    # An unusable credential on an open path is ignored, not refused.
    assert client.get("/schema/openapi.json", headers={"X-API-Key": "nope"}).status_code == 200


@pytest.mark.parametrize(("method", "path", "permission", "body"), ROUTES)
def test_a_principal_without_the_permission_is_403(
    app: tuple[TestClient[Any], Runtime], method: str, path: str, permission: Any, body: Any
) -> None:
    client, runtime = app
    others = sorted(ALL_PERMISSIONS - {permission.value})
    before = runtime.service.recorder.max_notification_id()
    key = new_key(runtime, *others)
    after_key = runtime.service.recorder.max_notification_id()
    assert before != after_key
    error = assert_envelope(
        call(client, method, path, body, **{"X-API-Key": key}), 403, "FORBIDDEN"
    )
    assert error["details"] == {"required": permission.value}
    assert permission.value in error["message"]
    token = hs256(permissions=others)
    assert_envelope(call(client, method, path, body, **bearer(token)), 403, "FORBIDDEN")
    assert runtime.service.recorder.max_notification_id() == after_key  # nothing recorded


@pytest.mark.parametrize(("method", "path", "permission", "body"), ROUTES)
def test_the_permission_alone_is_enough(
    app: tuple[TestClient[Any], Runtime], method: str, path: str, permission: Any, body: Any
) -> None:
    client, runtime = app
    response = call(client, method, path, body, **{"X-API-Key": new_key(runtime, permission)})
    assert response.status_code not in (401, 403), response.text


def test_403_does_not_tell_whether_a_task_exists(app: tuple[TestClient[Any], Runtime]) -> None:
    client, runtime = app
    writer = {"X-API-Key": new_key(runtime, Permission.TASKS_EXECUTE)}
    task_id = client.post(TASKS, json=SUBMIT, headers=writer).json()["id"]
    for path in (f"{TASKS}/{task_id}", f"{TASKS}/{uuid4()}", f"{TASKS}/not-a-uuid"):
        response = client.get(path, headers=writer)
        assert_envelope(response, 403, "FORBIDDEN")
        assert response.json() == {
            "error": {
                "code": "FORBIDDEN",
                "message": "permission tasks:read is required",
                "details": {"required": "tasks:read"},
            }
        }
    for path in (f"{TASKS}/{task_id}/cancel", f"{TASKS}/{uuid4()}/cancel"):
        assert client.post(path, json={}, headers=writer).json()["error"]["code"] == "FORBIDDEN"


def test_permission_is_checked_before_the_body_is_parsed(
    app: tuple[TestClient[Any], Runtime],
) -> None:
    client, runtime = app
    reader = {
        "X-API-Key": new_key(runtime, Permission.TASKS_READ),
        "content-type": "application/json",
    }
    assert_envelope(client.post(TASKS, content=b"{not json", headers=reader), 403, "FORBIDDEN")
    assert_unauthorized(
        client.post(TASKS, content=b"{not json", headers={"content-type": "application/json"})
    )


def test_unknown_key_is_401(app: tuple[TestClient[Any], Runtime]) -> None:
    client, _ = app
    unknown = "tex_0123456789abcdef_" + "a" * 52
    message = assert_unauthorized(client.get(TASKS, headers={"X-API-Key": unknown}))
    assert message == "invalid API key"
    assert (
        'error="invalid_token"'
        in client.get(TASKS, headers={"X-API-Key": unknown}).headers["www-authenticate"]
    )


def test_a_known_key_id_with_the_wrong_secret_is_401_like_an_unknown_key(
    app: tuple[TestClient[Any], Runtime],
) -> None:
    client, runtime = app
    key = new_key(runtime)
    prefix, key_id, secret = key.split("_")
    forged = f"{prefix}_{key_id}_{'b' * 52 if secret != 'b' * 52 else 'c' * 52}"
    assert assert_unauthorized(client.get(TASKS, headers={"X-API-Key": forged})) == (
        "invalid API key"
    )
    assert client.get(TASKS, headers={"X-API-Key": key}).status_code == 200


@pytest.mark.parametrize("value", ["", "   ", "not-a-key", "tex_", "tex_XYZ_abc", "Bearer x"])
def test_malformed_keys_are_401(app: tuple[TestClient[Any], Runtime], value: str) -> None:
    client, _ = app
    assert_unauthorized(client.get(TASKS, headers={"X-API-Key": value}))


def test_revoked_key_is_401(database_url: str, tmp_path: Path) -> None:
    settings = Settings(database_url=database_url, var_dir=tmp_path, apikey_cache_seconds=0)
    with api_client(settings) as (client, runtime):
        key = new_key(runtime)
        assert client.get(TASKS, headers={"X-API-Key": key}).status_code == 200
        runtime.apikeys.revoke(key.split("_")[1], OPERATOR)
        assert assert_unauthorized(client.get(TASKS, headers={"X-API-Key": key})) == (
            "API key revoked"
        )


def test_expired_key_is_401(app: tuple[TestClient[Any], Runtime]) -> None:
    client, runtime = app
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    keys = ApiKeyService(runtime.service, clock=lambda: an_hour_ago)
    key, record = keys.create(
        name="short-lived",
        permissions=sorted(ALL_PERMISSIONS),
        actor=OPERATOR,
        expires_at=an_hour_ago + timedelta(minutes=30),
    )
    assert record.expires_at is not None and record.expires_at < datetime.now(UTC)
    assert assert_unauthorized(client.get(TASKS, headers={"X-API-Key": key})) == "API key expired"
    assert (
        'ApiKey realm="taskexec", header="X-API-Key", error="invalid_token"'
        in (client.get(TASKS, headers={"X-API-Key": key}).headers["www-authenticate"])
    )


def test_a_key_works_at_once_and_a_revocation_needs_no_restart(
    database_url: str, tmp_path: Path
) -> None:
    """A revoked key stops working within the cache's lifetime (5 s in production, 1 s here)."""
    import time

    settings = Settings(database_url=database_url, var_dir=tmp_path, apikey_cache_seconds=1.0)
    with api_client(settings) as (client, runtime):
        key = new_key(runtime)  # created while the API runs
        assert client.get(TASKS, headers={"X-API-Key": key}).status_code == 200
        runtime.apikeys.revoke(key.split("_")[1], OPERATOR)
        deadline = time.monotonic() + 15
        while client.get(TASKS, headers={"X-API-Key": key}).status_code == 200:
            assert time.monotonic() < deadline, "revocation never took effect"
            time.sleep(0.05)
        assert_unauthorized(client.get(TASKS, headers={"X-API-Key": key}))


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer   "},
        {"Authorization": "Bearer x", "X-API-Key": "tex_x"},
    ],
)
def test_unusable_credentials_are_401(
    app: tuple[TestClient[Any], Runtime], headers: dict[str, str]
) -> None:
    client, _ = app
    response = client.get(TASKS, headers=headers)
    assert_unauthorized(response)
    assert "invalid_request" in response.headers["www-authenticate"]


def test_events_record_who_submitted_and_who_cancelled(
    app: tuple[TestClient[Any], Runtime],
) -> None:
    client, runtime = app
    key = new_key(runtime, Permission.TASKS_EXECUTE)
    key_id = key.split("_")[1]
    task_id = client.post(TASKS, json=SUBMIT, headers={"X-API-Key": key}).json()["id"]
    token = hs256(sub="alice@example.test", permissions=[Permission.TASKS_CANCEL.value])
    cancelled = client.post(f"{TASKS}/{task_id}/cancel", json={}, headers=bearer(token))
    assert cancelled.status_code == 200, cancelled.text

    events = [e for _, e in runtime.service.read_log(0, 1000) if str(e.originator_id) == task_id]
    assert [type(e) for e in events] == [Task.Submitted, Task.Cancelled]
    assert events[0].actor == {"id": key_id, "kind": "apikey"}
    assert events[1].actor == {"id": "alice@example.test", "kind": "jwt"}


def test_every_route_declares_a_permission_except_the_open_ones(
    app: tuple[TestClient[Any], Runtime],
) -> None:
    client, _ = app
    litestar_app: Any = client.app
    undeclared = []
    for route in litestar_app.routes:
        for handler in getattr(route, "route_handlers", []):
            if route.path in HEALTH_PATHS or route.path.startswith("/schema"):
                continue
            if handler.http_methods == {"OPTIONS"}:  # Litestar's own; the gate authenticates it
                continue
            if "permission" not in handler.opt:
                undeclared.append((route.path, handler.handler_name))
    assert undeclared == []


def test_openapi_declares_bearer_and_api_key_schemes(app: tuple[TestClient[Any], Runtime]) -> None:
    client, _ = app
    spec = client.get("/schema/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": schemes["bearerAuth"]["description"],
    }
    assert schemes["apiKeyAuth"]["type"] == "apiKey"
    assert (schemes["apiKeyAuth"]["in"], schemes["apiKeyAuth"]["name"]) == ("header", "X-API-Key")
    submit = spec["paths"][TASKS]["post"]
    assert submit["security"] == [{"bearerAuth": []}, {"apiKeyAuth": []}]
    assert {"401", "403", "429"} <= set(submit["responses"])
    for probe in HEALTH_PATHS:
        assert "security" not in spec["paths"][probe]["get"]


def test_credentials_that_cannot_be_checked_now_are_503(database_url: str, tmp_path: Path) -> None:
    """The event store is unreachable for an API-key lookup: 503, not a 401 or a crash."""
    settings = Settings(database_url=database_url, var_dir=tmp_path, apikey_cache_seconds=0)
    with api_client(settings) as (client, runtime):
        key = new_key(runtime)
        assert client.get(TASKS, headers={"X-API-Key": key}).status_code == 200
        table = "taskexec_events" if runtime.db_config.is_postgres else "stored_events"
        _execute(runtime, f"ALTER TABLE {table} RENAME TO {table}_away")
        try:
            response = client.get(TASKS, headers={"X-API-Key": key})
            assert_envelope(response, 503, "SERVICE_UNAVAILABLE")
            assert "x-ratelimit-limit" in response.headers
        finally:
            _execute(runtime, f"ALTER TABLE {table}_away RENAME TO {table}")
        assert client.get(TASKS, headers={"X-API-Key": key}).status_code == 200


def _execute(runtime: Runtime, sql: str) -> None:
    config = runtime.db_config
    if config.is_postgres:
        import psycopg

        with psycopg.connect(config.conninfo(), autocommit=True) as conn:
            conn.execute(sql)
        return
    import sqlite3

    assert config.sqlite_path is not None
    lite = sqlite3.connect(config.sqlite_path, timeout=10)
    try:
        lite.execute(sql)
        lite.commit()
    finally:
        lite.close()
