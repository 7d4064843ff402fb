"""The gate as pure ASGI logic, with fakes for what it calls: failure paths that real
components cannot be made to take on demand (a limiter that raises, odd messages)."""

from __future__ import annotations

import json
from typing import Any

from api.security.auth import Credentials
from api.security.gate import Gate, Security
from api.security.principal import AuthFailure, Principal
from api.security.ratelimit import MemoryLimiter, PostgresLimiter, Rate, RateLimits


class FakeAuthenticator:
    def __init__(self, outcome: Principal | Exception) -> None:
        self.outcome = outcome

    def authenticate(self, credentials: Credentials, *, blocking: bool) -> Principal:
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


class BrokenLimiter(MemoryLimiter):
    async def hit(self, key: str, rate: Rate) -> Any:
        raise RuntimeError("limiter bug")


async def run(gate: Gate, path: str = "/api/v1/tasks", key: bytes = b"tex_x") -> dict[str, Any]:
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "headers": [(b"x-api-key", key)],
        "client": ("10.0.0.1", 5000),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await gate(scope, receive, send)  # type: ignore[arg-type]
    start, body = sent[0], sent[1]
    headers: dict[str, list[str]] = {}
    for name, value in start["headers"]:
        headers.setdefault(name.decode(), []).append(value.decode())
    return {"status": start["status"], "headers": headers, "body": body["body"]}


async def inner(scope: Any, receive: Any, send: Any) -> None:
    user = scope.get("user")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": json.dumps({"user": user.id}).encode()})


def gate(outcome: Principal | Exception, limiter: Any = None) -> Gate:
    authenticator: Any = FakeAuthenticator(outcome)
    limits = RateLimits(limiter or MemoryLimiter(), Rate(5, 60), Rate(1, 60))
    security = Security(authenticator=authenticator, limits=limits)
    return Gate(inner, lambda: security)


PRINCIPAL = Principal(id="k1", kind="apikey", permissions=frozenset())


async def test_a_broken_limiter_does_not_take_the_api_down() -> None:
    result = await run(gate(PRINCIPAL, BrokenLimiter()))
    assert result["status"] == 200
    assert "x-ratelimit-limit" not in result["headers"]


async def test_an_unexpected_authentication_error_is_503_with_headers() -> None:
    result = await run(gate(OSError("database gone")))
    assert result["status"] == 503
    assert json.loads(result["body"])["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert result["headers"]["x-ratelimit-remaining"] == ["4"]


async def test_failure_messages_become_safe_header_values() -> None:
    result = await run(gate(AuthFailure("ApiKey", 'bad "key" \\ é\r\n')))
    assert result["status"] == 401
    assert json.loads(result["body"])["error"]["message"] == 'bad "key" \\ é\r\n'
    [bearer, api_key] = result["headers"]["www-authenticate"]
    assert bearer == 'Bearer realm="taskexec"'
    assert api_key == (
        'ApiKey realm="taskexec", header="X-API-Key", error="invalid_token", '
        "error_description=\"bad 'key' ' '''\""
    )


async def test_the_principal_reaches_the_app_and_headers_are_added() -> None:
    result = await run(gate(PRINCIPAL))
    assert (result["status"], json.loads(result["body"])) == (200, {"user": "k1"})
    assert result["headers"]["x-ratelimit-limit"] == ["5"]


async def test_a_limiter_used_without_its_lifespan_counts_in_memory() -> None:
    limiter = PostgresLimiter("host=nowhere.invalid")  # never opened: never connects
    decisions = [await limiter.hit("k", Rate(2, 60)) for _ in range(3)]
    assert [d.allowed for d in decisions] == [True, True, False]
    assert limiter.fallbacks == 3
