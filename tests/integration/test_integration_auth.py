"""INTEGRATION credentials end to end (issue 25, item 4), on SQLite and PostgreSQL: the
real app, a real worker and nats-server, a token endpoint and a service on the loopback.
A definition's ``executionConfig.auth`` travels with its task's work to the worker, which
reads the secrets from its environment: an OAuth2 bearer token (fetched once, reused by
the retry) or a static header; every call carries ``Idempotency-Key: <taskId>:<attempt>``;
a variable the worker lacks fails the task at once; no secret is stored anywhere."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from api.runtime import Runtime
from tests.integration_auth_support import Local, serve_local
from tests.worker_stack import app_with_worker
from workers.nats_server import EmbeddedNatsServer

TASKS = "/api/v1/tasks"
SECRET = "client-s3cr3t"
API_KEY = "api-k3y"


def definition(ident: str, endpoint: str, auth: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": ident,
        "name": ident,
        "type": "INTEGRATION",
        "version": "1",
        "timeout": 10_000,
        "retryPolicy": {"maxRetries": 2, "retryInterval": 50, "backoffMultiplier": 1},
        "executionConfig": {"endpoint": endpoint, "auth": auth},
    }


def definitions(url: str) -> list[dict[str, Any]]:
    oauth2 = {
        "type": "oauth2-client-credentials",
        "tokenUrl": f"{url}/token",
        "clientId": "client",
        "clientSecretEnv": "PAY_CLIENT_SECRET",
        "scope": "payments:write",
    }
    key = {"type": "headers", "headers": {"X-Api-Key": {"fromEnv": "PAY_API_KEY"}}}
    unset = {"type": "headers", "headers": {"X-Api-Key": {"fromEnv": "PAY_UNSET_KEY"}}}
    return [
        definition("pay-oauth", f"{url}/pay", oauth2),
        definition("pay-key", f"{url}/pay-key", key),
        definition("pay-unset", f"{url}/pay-unset", unset),
    ]


@pytest.fixture
def local() -> Iterator[Local]:
    with serve_local(SECRET) as state:
        yield state


@pytest.fixture
async def api(
    database_url: str,
    nats_server: EmbeddedNatsServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    local: Local,
) -> AsyncIterator[tuple[AsyncTestClient[Any], Runtime]]:
    monkeypatch.setenv("PAY_CLIENT_SECRET", SECRET)  # the worker's environment
    monkeypatch.setenv("PAY_API_KEY", API_KEY)
    monkeypatch.delenv("PAY_UNSET_KEY", raising=False)
    async with app_with_worker(
        database_url=database_url,
        nats_url=nats_server.url,
        tmp_path=tmp_path,
        monkeypatch=monkeypatch,
        handlers={},
        definitions=definitions(local.url),
    ) as built:
        yield built


async def run(client: AsyncTestClient[Any], definition_id: str) -> dict[str, Any]:
    """Submit a task and wait until it has ended."""
    submitted = await client.post(TASKS, json={"taskDefinitionId": definition_id, "input": {}})
    assert submitted.status_code == 201, submitted.text
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        body: dict[str, Any] = (await client.get(f"{TASKS}/{submitted.json()['id']}")).json()
        if body["status"] in ("COMPLETED", "FAILED"):
            return body
        assert asyncio.get_running_loop().time() < deadline, body
        await asyncio.sleep(0.02)


async def test_integration_calls_carry_their_credentials_and_idempotency_key(
    api: tuple[AsyncTestClient[Any], Runtime], local: Local
) -> None:
    client, runtime = api
    local.busy = 1  # the first call answers 503: the task is retried, with the same token
    paid = await run(client, "pay-oauth")
    assert (paid["status"], paid["attempts"], paid["output"]) == ("COMPLETED", 2, {"paid": True})
    assert [(c["authorization"], c["idempotency-key"]) for c in local.calls] == [
        ("Bearer tok-1", f"{paid['id']}:1"),
        ("Bearer tok-1", f"{paid['id']}:2"),
    ]
    assert local.grants == [
        {
            "form": {"grant_type": "client_credentials", "scope": "payments:write"},
            "client": f"client:{SECRET}",
        }
    ]

    keyed = await run(client, "pay-key")
    assert keyed["status"] == "COMPLETED"
    call = local.calls[-1]
    assert (call["x-api-key"], call["idempotency-key"]) == (API_KEY, f"{keyed['id']}:1")
    assert "authorization" not in call

    unset = await run(client, "pay-unset")  # retries are left, but no retry can help
    assert (unset["status"], unset["attempts"]) == ("FAILED", 1)
    assert unset["error"]["type"] == "AUTH_CONFIG_ERROR"
    assert "PAY_UNSET_KEY" in unset["error"]["message"]
    assert len(local.calls) == 3  # the service never saw a call without its key

    shown = (await client.get(f"{TASKS}/definitions/pay-oauth")).json()
    assert shown["executionConfig"]["auth"]["clientSecretEnv"] == "PAY_CLIENT_SECRET"
    stored = repr(await asyncio.to_thread(runtime.service.read_log, 0, 100_000))
    assert "PAY_CLIENT_SECRET" in stored  # the auth config is stored with each task …
    for secret in (SECRET, API_KEY, "tok-1"):  # … and no secret or token anywhere
        assert secret not in stored
        assert secret not in repr(shown)
