"""Admission by requests, through the real service (SQLite and PostgreSQL) and real
workers: a worker offering one cpu never runs two attempts that request one cpu each at
once; work too big for a worker is handed back, stays PENDING, and runs when a big enough
worker joins."""

from __future__ import annotations

import asyncio
import logging
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import pytest
from litestar.testing import AsyncTestClient

from tests.worker_stack import app_with_worker
from workers.capacity import Capacity
from workers.executor import Worker
from workers.nats_server import EmbeddedNatsServer
from workers.streams import WORK_MAX_DELIVER

TASKS = "/api/v1/tasks"
HANDLERS = {
    "capacity_handlers": textwrap.dedent(
        """
        import time

        def span(payload, context):
            with open(payload["log"], "a") as log:
                log.write(f"start {context.task_id}\\n")
            time.sleep(payload["seconds"])
            with open(payload["log"], "a") as log:
                log.write(f"end {context.task_id}\\n")
            return {"worker": context.worker}
        """
    )
}


def definition(ident: str, requests: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": ident,
        "name": ident,
        "type": "AUTOMATED",
        "version": "1",
        "timeout": 20_000,
        "executionConfig": {
            "handler": "capacity_handlers:span",
            "resourceRequirements": requests,
        },
    }


DEFINITIONS = [
    definition("one-cpu", {"cpu": "1", "memory": "64Mi"}),
    definition("two-cpus", {"cpu": "2"}),
    definition("small", {"cpu": "100m"}),
]
SMALL_WORKER = Capacity(millicpu=1000, memory_bytes=1 << 30, busy_delay_s=0.1, too_big_delay_s=0.2)
Api = AsyncTestClient[Any]


@pytest.fixture
async def api(
    database_url: str,
    nats_server: EmbeddedNatsServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Api]:
    """The service and a worker offering one cpu (four slots)."""
    async with app_with_worker(
        database_url=database_url,
        nats_url=nats_server.url,
        tmp_path=tmp_path,
        monkeypatch=monkeypatch,
        handlers=HANDLERS,
        definitions=DEFINITIONS,
        worker_options={"capacity": SMALL_WORKER},
    ) as (client, _):
        yield client


async def submit(client: Api, definition_id: str, payload: dict[str, Any]) -> str:
    created = await client.post(TASKS, json={"taskDefinitionId": definition_id, "input": payload})
    assert created.status_code == 201, created.text
    task_id: str = created.json()["id"]
    return task_id


async def completed(client: Api, task_id: str) -> dict[str, Any]:
    for _ in range(600):
        body: dict[str, Any] = (await client.get(f"{TASKS}/{task_id}")).json()
        if body["status"] not in ("PENDING", "RUNNING"):
            assert body["status"] == "COMPLETED", body
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"task {task_id} never ended: {body}")


async def test_attempts_whose_requests_fill_the_worker_never_overlap(
    api: Api, tmp_path: Path
) -> None:
    log = tmp_path / "spans.log"
    payload = {"log": str(log), "seconds": 0.3}
    ids = [await submit(api, "one-cpu", payload) for _ in range(3)]
    small = await submit(api, "small", {"log": str(tmp_path / "small.log"), "seconds": 0})

    for task_id in [*ids, small]:
        await completed(api, task_id)

    words = (await asyncio.to_thread(log.read_text)).split()
    assert len(words) == 12  # "start <task>" and "end <task>" of each of the three
    # start a, end a, start b, end b, ...: each ends before the next starts
    spans = [(words[i], words[i + 1], words[i + 2], words[i + 3]) for i in range(0, 12, 4)]
    for start, started, end, ended in spans:
        assert (start, end, started) == ("start", "end", ended)
    assert sorted(started for _, started, _, _ in spans) == sorted(ids)


async def test_work_too_big_for_a_worker_waits_pending_for_one_big_enough(
    api: Api, nats_server: EmbeddedNatsServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="workers.executor")
    payload = {"log": str(tmp_path / "big.log"), "seconds": 0}
    task_id = await submit(api, "two-cpus", payload)

    def handed_back() -> int:
        return sum("needs more than this worker has" in r.message for r in caplog.records)

    # Handed back more often than one message may be delivered (fresh copies took over),
    # and PENDING all along.
    for _ in range(400):
        body = (await api.get(f"{TASKS}/{task_id}")).json()
        assert (body["status"], body["attempts"]) == ("PENDING", 0), body
        if handed_back() > WORK_MAX_DELIVER:
            break
        await asyncio.sleep(0.05)
    assert handed_back() > WORK_MAX_DELIVER

    nc = await nats.connect(nats_server.url)
    big = Worker(nc, worker_id="big", capacity=Capacity(millicpu=4000))
    running = asyncio.create_task(big.run())
    try:
        body = await completed(api, task_id)
    finally:
        big.stop()
        await asyncio.wait_for(running, 30)
        await nc.close()
    assert body["output"] == {"worker": "big"}
    assert body["attempts"] == 1
