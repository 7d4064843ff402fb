"""A failing handler's traceback kept with its task (real app, real worker, real
nats-server, SQLite and PostgreSQL): ``GET /api/v1/tasks/{id}`` shows it as
``error.details.traceback``, and the history's ``retry_scheduled`` and ``failed`` events
carry it; a process-isolated handler's traceback comes from its child."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from tests.worker_stack import app_with_worker
from workers.nats_server import EmbeddedNatsServer

TASKS = "/api/v1/tasks"
HANDLERS = textwrap.dedent(
    """
    class LedgerMismatch(Exception):
        pass

    def reconcile_ledger(entries):
        raise LedgerMismatch(f"{entries} entries \\u00e9\\u20ac do not balance")

    def close_books(payload, context):
        reconcile_ledger(payload["entries"])
    """
)


def definition(ident: str, **execution: Any) -> dict[str, Any]:
    return {
        "id": ident,
        "name": ident,
        "type": "AUTOMATED",
        "version": "1",
        "timeout": 30_000,
        # One retry after 50 ms: a retry_scheduled, then a failed.
        "retryPolicy": {"maxRetries": 1, "retryInterval": 50, "backoffMultiplier": 1},
        "executionConfig": {"handler": "traceback_handlers:close_books", **execution},
    }


@pytest.fixture
async def client(
    database_url: str,
    nats_server: EmbeddedNatsServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[AsyncTestClient[Any]]:
    async with app_with_worker(
        database_url=database_url,
        nats_url=nats_server.url,
        tmp_path=tmp_path,
        monkeypatch=monkeypatch,
        handlers={"traceback_handlers": HANDLERS},
        definitions=[definition("books"), definition("books-process", isolation="process")],
    ) as (test_client, _):
        yield test_client


async def until_failed(client: AsyncTestClient[Any], task_id: str) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        body: dict[str, Any] = (await client.get(f"{TASKS}/{task_id}")).json()
        if body["status"] == "FAILED":
            return body
        assert asyncio.get_running_loop().time() < deadline, body
        await asyncio.sleep(0.02)


def assert_handler_traceback(trace: str) -> None:
    assert trace.startswith("Traceback (most recent call last):"), trace
    assert "in close_books" in trace and "in reconcile_ledger" in trace, trace
    assert trace.rstrip().endswith("LedgerMismatch: 3 entries é€ do not balance"), trace


@pytest.mark.parametrize("definition_id", ["books", "books-process"])
async def test_a_failed_tasks_traceback_is_in_get_and_in_its_history(
    client: AsyncTestClient[Any], definition_id: str
) -> None:
    submitted = await client.post(
        TASKS, json={"taskDefinitionId": definition_id, "input": {"entries": 3}}
    )
    assert submitted.status_code == 201, submitted.text
    task_id = submitted.json()["id"]

    body = await until_failed(client, task_id)
    error = body["error"]
    assert (error["type"], error["message"]) == ("LedgerMismatch", "3 entries é€ do not balance")
    assert set(error["details"]) == {"traceback"}
    assert_handler_traceback(error["details"]["traceback"])

    history = (await client.get(f"{TASKS}/{task_id}/history")).json()["events"]
    kinds = [e["type"] for e in history]
    assert kinds == ["submitted", "started", "retry_scheduled", "started", "failed"], kinds
    for event in (history[2], history[4]):
        assert event["data"]["error"]["type"] == "LedgerMismatch"
        assert_handler_traceback(event["data"]["traceback"])
    assert history[4]["data"]["traceback"] == error["details"]["traceback"]
    assert "traceback" not in history[1]["data"]  # only failures carry one

    # The task's list entry stays as it was: the traceback is for the task's own page.
    listed = (await client.get(TASKS, params={"errorType": "LedgerMismatch"})).json()
    assert task_id in {item["id"] for item in listed["items"]}
