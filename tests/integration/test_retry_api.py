"""Retrying finished tasks over HTTP (real app, real worker, real nats-server, SQLite and
PostgreSQL): ``POST /api/v1/tasks/{taskId}/retry`` requeues a FAILED, TIMED_OUT or
CANCELLED task, which runs again from its next attempt under its retry policy afresh;
409 for PENDING, RUNNING and COMPLETED; the list's ``errorType`` filter; and the work of
a cancelled task requeued runs, while its work from before the cancel does not."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from litestar.testing import AsyncTestClient

from api.runtime import Runtime
from domain.task import Task
from tests.security_support import assert_envelope
from tests.worker_stack import app_with_worker
from workers.nats_server import EmbeddedNatsServer

TASKS = "/api/v1/tasks"
HANDLERS = textwrap.dedent(
    """
    import os
    import time

    class Flaky(Exception):
        pass

    def flaky(payload, context):
        with open(os.environ["RETRY_RUNS"], "a") as runs:
            runs.write(f"{context.task_id} {context.attempt}\\n")
        time.sleep(payload.get("seconds", 0))
        if os.path.exists(os.environ["RETRY_BROKEN"]):
            raise Flaky(f"attempt {context.attempt} failed")
        return {"attempt": context.attempt}
    """
)
# One retry after 50 ms: two attempts per round.
FLAKY = {
    "id": "flaky",
    "name": "Flaky",
    "type": "AUTOMATED",
    "version": "1",
    "timeout": 10_000,
    "retryPolicy": {"maxRetries": 1, "retryInterval": 50, "backoffMultiplier": 1},
    "executionConfig": {"handler": "requeue_handlers:flaky"},
}
APPROVE = {"id": "approve", "name": "Approve", "type": "MANUAL", "version": "1"}


class Api:
    def __init__(self, client: AsyncTestClient[Any], runtime: Runtime, tmp: Path) -> None:
        self.client = client
        self.runtime = runtime
        self.broken = tmp / "broken"
        self.runs = tmp / "runs.txt"

    async def submit(self, body: dict[str, Any] | None = None, **config: Any) -> str:
        payload: dict[str, Any] = {"taskDefinitionId": "flaky", "input": {}, **(body or {})}
        if config:
            payload["executionConfig"] = config
        response = await self.client.post(TASKS, json=payload)
        assert response.status_code == 201, response.text
        task_id: str = response.json()["id"]
        return task_id

    async def until(self, task_id: str, *statuses: str, timeout: float = 20) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            body: dict[str, Any] = (await self.client.get(f"{TASKS}/{task_id}")).json()
            if body["status"] in statuses:
                return body
            assert asyncio.get_running_loop().time() < deadline, body
            await asyncio.sleep(0.02)

    async def retry(self, task_id: str, body: Any = None) -> Any:
        return await self.client.post(f"{TASKS}/{task_id}/retry", json=body)

    def events(self, task_id: str) -> list[Any]:
        return list(self.runtime.service.events.get(UUID(task_id)))

    def runs_of(self, task_id: str) -> list[int]:
        lines = self.runs.read_text().splitlines() if self.runs.exists() else []
        return [int(line.split()[1]) for line in lines if line.startswith(task_id)]


@pytest.fixture
async def api(
    database_url: str,
    nats_server: EmbeddedNatsServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Api]:
    monkeypatch.setenv("RETRY_RUNS", str(tmp_path / "runs.txt"))
    monkeypatch.setenv("RETRY_BROKEN", str(tmp_path / "broken"))
    async with app_with_worker(
        database_url=database_url,
        nats_url=nats_server.url,
        tmp_path=tmp_path,
        monkeypatch=monkeypatch,
        handlers={"requeue_handlers": HANDLERS},
        definitions=[FLAKY, APPROVE],
    ) as (client, runtime):
        yield Api(client, runtime, tmp_path)


async def test_a_failed_task_retried_runs_again_under_its_policy_and_completes(api: Api) -> None:
    api.broken.touch()
    task_id = await api.submit()
    failed = await api.until(task_id, "FAILED")
    assert (failed["attempts"], failed["error"]["type"]) == (2, "Flaky")

    # Still broken: a requeue is a new round of the policy (1 retry): attempts 3 and 4.
    response = await api.retry(task_id, {"reason": "the provider says it is back"})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert set(answer) == {"id", "status", "updatedAt"}
    assert (answer["id"], answer["status"]) == (task_id, "PENDING")
    failed = await api.until(task_id, "FAILED")
    assert failed["attempts"] == 4
    kinds = [type(e).__name__ for e in api.events(task_id)]
    assert kinds[5:] == ["Requeued", "Started", "RetryScheduled", "Started", "Failed"]

    # Mended: the next requeue runs attempt 5, once, to its end.
    api.broken.unlink()
    response = await api.retry(task_id)  # no body: the reason is optional
    assert response.status_code == 200, response.text
    pending = (await api.client.get(f"{TASKS}/{task_id}")).json()  # read-your-writes
    assert (pending["status"], pending["error"], pending["attempts"]) == ("PENDING", None, 4)
    done = await api.until(task_id, "COMPLETED")
    assert (done["attempts"], done["output"], done["error"]) == (5, {"attempt": 5}, None)
    assert api.runs_of(task_id) == [1, 2, 3, 4, 5]
    requeued = [e for e in api.events(task_id) if isinstance(e, Task.Requeued)]
    assert [(e.attempt, e.reason) for e in requeued] == [
        (3, "the provider says it is back"),
        (5, None),
    ]
    assert requeued[0].actor["kind"] == "apikey"

    conflict = assert_envelope(await api.retry(task_id), 409, "CONFLICT")
    assert conflict["details"] == {"status": "COMPLETED"}


async def test_pending_and_running_tasks_are_409_unknown_ones_404_bad_bodies_400(
    api: Api,
) -> None:
    manual = (
        await api.client.post(TASKS, json={"taskDefinitionId": "approve", "input": {}})
    ).json()["id"]
    error = assert_envelope(await api.retry(manual), 409, "CONFLICT")
    assert error["details"] == {"status": "PENDING"}
    slow = await api.submit({"input": {"seconds": 1.0}})
    await api.until(slow, "RUNNING")
    error = assert_envelope(await api.retry(slow), 409, "CONFLICT")
    assert error["details"] == {"status": "RUNNING"}
    before = api.events(slow)

    for unknown in (str(uuid4()), "not-a-uuid"):
        assert_envelope(await api.retry(unknown), 404, "NOT_FOUND")
    for body in ({"reason": "x" * 1025}, {"reason": "ok", "force": True}, {"reason": 5}):
        assert_envelope(await api.retry(manual, body), 400, "VALIDATION_ERROR")
    assert (await api.until(slow, "COMPLETED"))["attempts"] == 1
    assert len(api.events(slow)) == len(before) + 1  # only its own Completed


async def test_a_cancelled_task_retried_runs_and_its_earlier_work_does_not(api: Api) -> None:
    # Attempt 1 fails; attempt 2's work waits 1.5 s in the queue (notBefore) when the task
    # is cancelled, then requeued: attempt 2 runs now, and the earlier work, once due, is
    # dropped by the cancel marker (it does not follow the requeue).
    api.broken.touch()
    task_id = await api.submit(retryPolicy={"retryInterval": 1500})
    await api.until(task_id, "RUNNING", "PENDING")
    for _ in range(1000):  # until attempt 1 has failed and attempt 2 waits
        if isinstance(api.events(task_id)[-1], Task.RetryScheduled):
            break
        await asyncio.sleep(0.02)
    cancelled = await api.client.post(f"{TASKS}/{task_id}/cancel", json={"reason": "hold on"})
    assert cancelled.status_code == 200, cancelled.text
    api.broken.unlink()
    assert (await api.retry(task_id)).status_code == 200
    done = await api.until(task_id, "COMPLETED")
    assert (done["attempts"], done["output"]) == (2, {"attempt": 2})
    await asyncio.sleep(2.5)  # the earlier work of attempt 2 comes due meanwhile
    assert api.runs_of(task_id) == [1, 2]
    kinds = [type(e).__name__ for e in api.events(task_id)]
    assert kinds == [
        "Submitted",
        "Started",
        "RetryScheduled",
        "Cancelled",
        "Requeued",
        "Started",
        "Completed",
    ]


async def test_the_error_type_filter_lists_the_failures_of_one_kind(api: Api) -> None:
    api.broken.touch()
    flaky = [await api.submit() for _ in range(3)]
    for task_id in flaky:
        await api.until(task_id, "FAILED")
    api.broken.unlink()
    fine = await api.submit()
    await api.until(fine, "COMPLETED")

    async def listed(**params: Any) -> tuple[list[str], int]:
        response = await api.client.get(TASKS, params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        return [item["id"] for item in body["items"]], body["pagination"]["totalItems"]

    newest_first = list(reversed(flaky))
    assert await listed(errorType="Flaky") == (newest_first, 3)
    assert await listed(errorType="Flaky", status="FAILED", limit=2) == (newest_first[:2], 3)
    assert await listed(errorType="Flaky", status="FAILED", page=2, limit=2) == (
        newest_first[2:],
        3,
    )
    assert await listed(errorType="Flaky", status="COMPLETED") == ([], 0)
    assert await listed(errorType="TIMEOUT") == ([], 0)
    # Requeued: no error any more, so no longer listed as a failure of that kind.
    assert (await api.retry(flaky[0])).status_code == 200
    assert await listed(errorType="Flaky", status="FAILED") == (newest_first[:2], 2)
    await api.until(flaky[0], "COMPLETED")
    for bad in ({"errorType": ""}, {"errorType": "x" * 257}):
        assert_envelope(await api.client.get(TASKS, params=bad), 400, "VALIDATION_ERROR")
