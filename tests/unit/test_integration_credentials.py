"""An INTEGRATION attempt's credentials and its Idempotency-Key (workers/integration.py,
workers/integration_auth.py), against a token endpoint and a service this test runs on
the loopback: the bearer token is fetched once, reused, and fetched again before it
expires or after the service refused it; static headers come from the worker's
environment; a missing variable or a refused token fails the attempt with its type, and
no secret or token is ever in a message or a log line."""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
import types
from collections.abc import Iterator
from typing import Any

import authlib.oauth2.rfc6749.wrappers as token_wrappers
import pytest

from tests.integration_auth_support import Local, serve_local
from workers.attempt import Attempt, Result
from workers.handlers import HandlerRegistry
from workers.integration import IntegrationExecutor
from workers.integration_auth import TOKEN_LEEWAY_S
from workers.protocol import WorkItem

SECRET = "client-s3cr3t"
API_KEY = "api-k3y"


@pytest.fixture
def local() -> Iterator[Local]:
    with serve_local(SECRET) as state:
        yield state


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Authlib's clock for token expiry, moved by the test (``clock[0] += s``)."""
    now = [1_700_000_000.0]
    monkeypatch.setattr(token_wrappers, "time", types.SimpleNamespace(time=lambda: now[0]))
    return now


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAY_CLIENT_SECRET", SECRET)
    monkeypatch.setenv("PAY_API_KEY", API_KEY)


def oauth2(local: Local, **changes: Any) -> dict[str, Any]:
    auth = {
        "type": "oauth2-client-credentials",
        "tokenUrl": f"{local.url}/token",
        "clientId": "client",
        "clientSecretEnv": "PAY_CLIENT_SECRET",
        "scope": "payments:write",
    }
    return {**auth, **changes}


def work(local: Local, auth: dict[str, Any] | None, attempt: int = 1) -> WorkItem:
    return WorkItem(
        task_id="task-7",
        attempt=attempt,
        task_type="INTEGRATION",
        definition_id="pay",
        input={"amount": 5},
        timeout_ms=5000,
        priority="MEDIUM",
        endpoint=f"{local.url}/pay",
        auth=auth,
    )


async def run(executor: IntegrationExecutor, item: WorkItem) -> Result:
    result = await Attempt(item, "w", HandlerRegistry(), executor).run()
    assert result is not None
    return result


@pytest.fixture
async def executor() -> Any:
    shared = IntegrationExecutor()
    yield shared
    await shared.close()


@pytest.mark.usefixtures("secrets", "clock")
async def test_the_token_is_fetched_once_and_every_call_carries_it(
    local: Local, executor: IntegrationExecutor
) -> None:
    for attempt in (1, 2, 3):
        result = await run(executor, work(local, oauth2(local), attempt))
        assert result == Result("completed", output={"paid": True})
    assert len(local.grants) == 1
    assert local.grants[0] == {
        "form": {"grant_type": "client_credentials", "scope": "payments:write"},
        "client": f"client:{SECRET}",  # client_secret_basic, the secret from the variable
    }
    assert [c["authorization"] for c in local.calls] == ["Bearer tok-1"] * 3
    assert [c["idempotency-key"] for c in local.calls] == ["task-7:1", "task-7:2", "task-7:3"]


@pytest.mark.usefixtures("secrets")
async def test_the_token_is_fetched_again_just_before_it_expires(
    local: Local, executor: IntegrationExecutor, clock: list[float]
) -> None:
    await run(executor, work(local, oauth2(local)))
    clock[0] += 3600 - TOKEN_LEEWAY_S - 5  # still well within its life
    await run(executor, work(local, oauth2(local)))
    clock[0] += 10  # within the leeway of its expiry: a new one
    await run(executor, work(local, oauth2(local)))
    await run(executor, work(local, oauth2(local)))
    assert [c["authorization"] for c in local.calls] == [
        "Bearer tok-1",
        "Bearer tok-1",
        "Bearer tok-2",
        "Bearer tok-2",
    ]


@pytest.mark.usefixtures("secrets", "clock")
async def test_concurrent_first_calls_share_one_token(
    local: Local, executor: IntegrationExecutor
) -> None:
    results = await asyncio.gather(*(run(executor, work(local, oauth2(local))) for _ in range(5)))
    assert {r.kind for r in results} == {"completed"}
    assert len(local.grants) == 1


@pytest.mark.usefixtures("secrets", "clock")
async def test_a_token_the_service_refuses_is_not_used_again(
    local: Local, executor: IntegrationExecutor
) -> None:
    local.rejected.add("tok-1")
    refused = await run(executor, work(local, oauth2(local)))
    assert (refused.error_type, refused.retryable) == ("HTTP_401", False)
    assert await run(executor, work(local, oauth2(local))) == Result("completed", {"paid": True})
    assert [c["authorization"] for c in local.calls] == ["Bearer tok-1", "Bearer tok-2"]


@pytest.mark.usefixtures("secrets")
async def test_static_headers_come_from_the_workers_environment(
    local: Local, executor: IntegrationExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth = {"type": "headers", "headers": {"X-Api-Key": {"fromEnv": "PAY_API_KEY"}}}
    await run(executor, work(local, auth))
    monkeypatch.setenv("PAY_API_KEY", "rotated")  # read at every call
    await run(executor, work(local, auth, attempt=2))
    assert [(c["x-api-key"], c["idempotency-key"]) for c in local.calls] == [
        (API_KEY, "task-7:1"),
        ("rotated", "task-7:2"),
    ]
    assert local.grants == []


async def test_a_call_without_auth_carries_only_the_idempotency_key(
    local: Local, executor: IntegrationExecutor
) -> None:
    await run(executor, work(local, None, attempt=4))
    (call,) = local.calls
    assert call["idempotency-key"] == "task-7:4"
    assert "authorization" not in call


@pytest.mark.parametrize(
    ("auth", "variable"),
    [
        ({"clientSecretEnv": "NO_SUCH_SECRET"}, "NO_SUCH_SECRET"),
        ({"type": "headers", "headers": {"X-Key": {"fromEnv": "NO_SUCH_KEY"}}}, "NO_SUCH_KEY"),
        ({"clientSecretEnv": "EMPTY_SECRET"}, "EMPTY_SECRET"),
        ({"clientSecretEnv": "TWO_LINES"}, "TWO_LINES"),
    ],
)
async def test_a_missing_variable_fails_the_attempt_for_good_before_any_request(
    local: Local,
    executor: IntegrationExecutor,
    monkeypatch: pytest.MonkeyPatch,
    auth: dict[str, Any],
    variable: str,
) -> None:
    monkeypatch.setenv("EMPTY_SECRET", "")
    monkeypatch.setenv("TWO_LINES", "abc\r\nX-Injected: 1")
    config = auth if auth.get("type") == "headers" else oauth2(local, **auth)
    result = await run(executor, work(local, config))
    assert (result.kind, result.error_type, result.retryable) == (
        "failed",
        "AUTH_CONFIG_ERROR",
        False,
    )
    assert variable in result.error_message
    assert "X-Injected" not in result.error_message
    assert (local.grants, local.calls) == ([], [])


async def test_a_work_item_with_a_bad_auth_config_fails_for_good(
    local: Local, executor: IntegrationExecutor
) -> None:
    result = await run(executor, work(local, {"type": "kerberos"}))
    assert (result.error_type, result.retryable) == ("AUTH_CONFIG_ERROR", False)
    assert local.calls == []


@pytest.mark.usefixtures("secrets", "clock")
async def test_a_refused_or_unreachable_token_endpoint_is_a_retryable_auth_error(
    local: Local, executor: IntegrationExecutor, caplog: pytest.LogCaptureFixture
) -> None:
    local.refuse = True
    refused = await run(executor, work(local, oauth2(local)))
    assert (refused.error_type, refused.retryable) == ("AUTH_ERROR", True)
    assert "invalid_client" in refused.error_message
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        nobody = f"http://127.0.0.1:{sock.getsockname()[1]}/token"
    with caplog.at_level(logging.DEBUG):
        down = await run(executor, work(local, oauth2(local, tokenUrl=nobody)))
    assert (down.error_type, down.retryable) == ("AUTH_ERROR", True)
    assert nobody in down.error_message
    assert local.calls == []  # the service was never called without credentials
    for text in (refused.error_message, down.error_message, caplog.text):
        assert SECRET not in text
        assert base64.b64encode(f"client:{SECRET}".encode()).decode() not in text


@pytest.mark.usefixtures("secrets", "clock")
async def test_no_secret_or_token_is_logged(
    local: Local, executor: IntegrationExecutor, caplog: pytest.LogCaptureFixture
) -> None:
    local.rejected.add("tok-1")
    headers = {"type": "headers", "headers": {"X-Api-Key": {"fromEnv": "PAY_API_KEY"}}}
    with caplog.at_level(logging.DEBUG):
        await run(executor, work(local, oauth2(local)))  # fails: HTTP_401, logged
        await run(executor, work(local, oauth2(local)))
        await run(executor, work(local, headers))
    assert "HTTP_401" in caplog.text
    for secret in (SECRET, API_KEY, "tok-1", "tok-2"):
        assert secret not in caplog.text
