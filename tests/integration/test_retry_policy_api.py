"""A task's own retryPolicy over HTTP (real app, real worker, real nats-server): every
documented field is accepted, and what the task leaves out comes from its definition
(docs/execution.md, Retries); unknown fields and values out of range are 400."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from litestar.testing import AsyncTestClient

from api.runtime import Runtime
from domain.task import Task
from domain.values import RetryPolicy
from tests.security_support import assert_envelope
from tests.worker_stack import app_with_worker
from workers.nats_server import EmbeddedNatsServer

TASKS = "/api/v1/tasks"
HANDLERS = textwrap.dedent(
    """
    class Declined(Exception):
        pass

    class Flaky(Exception):
        pass

    def picky(payload, context):
        if payload["error"] == "Declined":
            raise Declined("card declined")
        raise Flaky(f"attempt {context.attempt} failed")
    """
)
# The definition's policy: 1 retry after 50 ms, Declined never retried.
PICKY = {
    "id": "picky",
    "name": "Picky",
    "type": "AUTOMATED",
    "version": "1",
    "timeout": 10_000,
    "retryPolicy": {
        "maxRetries": 1,
        "retryInterval": 50,
        "backoffMultiplier": 1,
        "nonRetryableErrors": ["Declined"],
    },
    "executionConfig": {"handler": "retry_handlers:picky"},
}


class Api:
    def __init__(self, client: AsyncTestClient[Any], runtime: Runtime) -> None:
        self.client = client
        self.runtime = runtime

    async def submit(self, error: str, retry: dict[str, Any]) -> UUID:
        body = {
            "taskDefinitionId": "picky",
            "input": {"error": error},
            "executionConfig": {"retryPolicy": retry},
        }
        response = await self.client.post(TASKS, json=body)
        assert response.status_code == 201, response.text
        return UUID(response.json()["id"])

    async def finished(self, task_id: UUID, timeout: float = 20) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            body: dict[str, Any] = (await self.client.get(f"{TASKS}/{task_id}")).json()
            if body["status"] in ("COMPLETED", "FAILED"):
                return body
            assert asyncio.get_running_loop().time() < deadline, body
            await asyncio.sleep(0.02)

    def policy(self, task_id: UUID) -> RetryPolicy:
        """The policy the task's Submitted event recorded."""
        task: Task = self.runtime.service.load(task_id)
        return task.retry_policy

    def events(self, task_id: UUID) -> list[Any]:
        log = self.runtime.service.read_log(0, 100_000)
        return [e for _, e in log if e.originator_id == task_id]


@pytest.fixture
async def api(
    database_url: str,
    nats_server: EmbeddedNatsServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Api]:
    async with app_with_worker(
        database_url=database_url,
        nats_url=nats_server.url,
        tmp_path=tmp_path,
        monkeypatch=monkeypatch,
        handlers={"retry_handlers": HANDLERS},
        definitions=[PICKY],
    ) as (client, runtime):
        yield Api(client, runtime)


async def test_a_partial_policy_keeps_the_definitions_other_fields(api: Api) -> None:
    # Only maxRetries given: the definition's nonRetryableErrors still fail it at once.
    declined = await api.submit("Declined", {"maxRetries": 3})
    assert api.policy(declined) == RetryPolicy(3, 50, 1.0, None, ("Declined",))
    row = await api.finished(declined)
    assert (row["status"], row["attempts"]) == ("FAILED", 1)
    assert row["error"]["type"] == "Declined"

    # Retried as often as the task says, as soon as the definition says (50 ms, not 60 s).
    flaky = await api.submit("Flaky", {"maxRetries": 2})
    row = await api.finished(flaky)
    assert (row["status"], row["attempts"]) == ("FAILED", 3)
    retries = [e for e in api.events(flaky) if isinstance(e, Task.RetryScheduled)]
    assert len(retries) == 2
    for retry in retries:
        delay = datetime.fromisoformat(retry.retry_at) - retry.timestamp
        assert delay.total_seconds() * 1000 == pytest.approx(50, abs=1)


async def test_the_extensions_are_accepted_and_a_given_list_replaces_the_definitions(
    api: Api,
) -> None:
    given = {"nonRetryableErrors": ["Flaky"], "maxInterval": 10}
    flaky = await api.submit("Flaky", given)
    assert api.policy(flaky) == RetryPolicy(1, 50, 1.0, 10, ("Flaky",))
    row = await api.finished(flaky)
    assert (row["status"], row["attempts"]) == ("FAILED", 1)  # Flaky: not retried now
    declined = await api.submit("Declined", given)
    row = await api.finished(declined)
    assert (row["status"], row["attempts"]) == ("FAILED", 2)  # Declined: retried now


async def test_bulk_items_merge_the_same_way(api: Api) -> None:
    item = {
        "taskDefinitionId": "picky",
        "input": {"error": "Declined"},
        "executionConfig": {"retryPolicy": {"retryInterval": 7}},
    }
    response = await api.client.post(f"{TASKS}/bulk", json={"tasks": [item]})
    assert response.status_code == 200, response.text
    (result,) = response.json()["items"]
    assert result["statusCode"] == 201
    assert api.policy(UUID(result["task"]["id"])) == RetryPolicy(1, 7, 1.0, None, ("Declined",))


REFUSED = [
    ({"maxRetries": 1, "jitter": True}, "jitter"),
    ({"maxRetries": -1}, "maxRetries"),
    ({"maxRetries": 101}, "maxRetries"),
    ({"retryInterval": 86_400_001}, "retryInterval"),
    ({"backoffMultiplier": 0.5}, "backoffMultiplier"),
    ({"maxInterval": -1}, "maxInterval"),
    ({"maxInterval": 2_592_000_001}, "maxInterval"),  # past 30 days
    ({"nonRetryableErrors": [""]}, "nonRetryableErrors"),
    ({"nonRetryableErrors": "Declined"}, "nonRetryableErrors"),
    ({"nonRetryableErrors": ["E"] * 101}, "nonRetryableErrors"),
]


async def test_unknown_fields_and_values_out_of_range_are_400(api: Api) -> None:
    before = api.runtime.service.recorder.max_notification_id()
    for retry, field in REFUSED:
        body = {
            "taskDefinitionId": "picky",
            "input": {"error": "Flaky"},
            "executionConfig": {"retryPolicy": retry},
        }
        response = await api.client.post(TASKS, json=body)
        error = assert_envelope(response, 400, "VALIDATION_ERROR")
        assert field in error["message"], (retry, error)
    assert api.runtime.service.recorder.max_notification_id() == before
