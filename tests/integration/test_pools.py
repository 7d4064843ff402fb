"""Executor pools end to end (issue 25, item 1) on SQLite and PostgreSQL: the real app,
its relay and real workers against nats-server. A worker takes its pools' tasks only;
another pool's wait PENDING, shown by the backlog, and run once a worker of that pool
joins, none lost; within a pool, priorities hold. A bad pool name stops the load of the
definitions, naming the file and the field. (The streams underneath:
tests/integration/test_pool_streams.py.)"""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import pytest
from litestar.testing import AsyncTestClient

from api.runtime import Runtime
from api.settings import Settings
from commands.catalog import DefinitionFileError
from tests.worker_stack import app_with_worker
from workers.bridge.backlog import read_backlog
from workers.executor import Worker
from workers.nats_server import EmbeddedNatsServer

TASKS = "/api/v1/tasks"
HANDLERS = {
    "pool_handlers": textwrap.dedent(
        """
        import pathlib

        def note(payload, context):
            with open(payload["log"], "a") as log:
                log.write(payload["name"] + "\\n")
            return {"name": payload["name"]}
        """
    )
}


def definition(name: str, executor: str | None) -> dict[str, Any]:
    config: dict[str, Any] = {"handler": "pool_handlers:note"}
    if executor is not None:
        config["executor"] = executor
    return {
        "id": name,
        "name": name,
        "type": "AUTOMATED",
        "version": "1",
        "executionConfig": config,
    }


DEFINITIONS = [
    definition("on-a", "pool-a"),
    definition("on-b", "pool-b"),
    definition("plain", None),
]
Api = tuple[AsyncTestClient[Any], Runtime]


@pytest.fixture
async def api(
    database_url: str,
    nats_server: EmbeddedNatsServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Api]:
    """The app, and one worker (``w``) of pool-a and the default pool."""
    async with app_with_worker(
        database_url=database_url,
        nats_url=nats_server.url,
        tmp_path=tmp_path,
        monkeypatch=monkeypatch,
        handlers=HANDLERS,
        definitions=DEFINITIONS,
        pools=("pool-a", "standard-executor"),
    ) as stack:
        yield stack


async def submit(
    client: AsyncTestClient[Any], definition_id: str, name: str, log: Path, priority: str = "MEDIUM"
) -> str:
    answer = await client.post(
        TASKS,
        json={
            "taskDefinitionId": definition_id,
            "priority": priority,
            "input": {"name": name, "log": str(log)},
        },
    )
    assert answer.status_code == 201, answer.text
    task_id: str = answer.json()["id"]
    return task_id


async def until(client: AsyncTestClient[Any], task_id: str, status: str) -> dict[str, Any]:
    for _ in range(600):
        body: dict[str, Any] = (await client.get(f"{TASKS}/{task_id}")).json()
        if body["status"] == status:
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"task {task_id} never {status}: {body}")


async def pending_in(js: Any, pool: str, priority: str, count: int) -> None:
    """The backlog shows ``count`` items pending on ``pool``'s queue (the relay made its
    consumers at its first work item)."""
    for _ in range(200):
        backlog = await read_backlog(js)
        queue = backlog.work.get((pool, priority))
        if queue is not None and queue.pending == count:
            assert queue.unacked == 0 and queue.oldest_s >= 0
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{pool}/{priority}: never {count} pending: {backlog.work}")


async def test_a_worker_takes_its_pools_only_and_another_pools_work_waits_for_its_worker(
    api: Api, nats_server: EmbeddedNatsServer, tmp_path: Path
) -> None:
    client, _ = api
    log = tmp_path / "ran"
    on_a = [await submit(client, "on-a", f"a{i}", log) for i in range(3)]
    on_b = [await submit(client, "on-b", f"b{i}", log) for i in range(3)]
    plain = await submit(client, "plain", "plain", log)
    for task_id in [*on_a, plain]:
        done = await until(client, task_id, "COMPLETED")
        assert done["executionMetadata"]["executionEnvironment"] == "w"
    nc = await nats.connect(nats_server.url)
    try:
        await pending_in(nc.jetstream(), "pool-b", "medium", 3)  # waiting, and shown
        for task_id in on_b:
            shown = (await client.get(f"{TASKS}/{task_id}")).json()
            assert (shown["status"], shown["attempts"]) == ("PENDING", 0)
        assert sorted(log.read_text().split()) == ["a0", "a1", "a2", "plain"]

        joined = Worker(nc, worker_id="wb", pools=["pool-b"])  # a pool-b worker joins
        running = asyncio.create_task(joined.run())
        try:
            for task_id in on_b:  # every one of them: none lost while it waited
                done = await until(client, task_id, "COMPLETED")
                ran_on = done["executionMetadata"]["executionEnvironment"]
                assert (ran_on, done["attempts"]) == ("wb", 1)
            await pending_in(nc.jetstream(), "pool-b", "medium", 0)
        finally:
            joined.stop()
            await asyncio.wait_for(running, 30)
    finally:
        await nc.close()
    assert sorted(log.read_text().split()) == ["a0", "a1", "a2", "b0", "b1", "b2", "plain"]


async def test_priorities_hold_within_a_pool(
    api: Api, nats_server: EmbeddedNatsServer, tmp_path: Path
) -> None:
    client, _ = api
    log = tmp_path / "ran"
    order = ["LOW", "MEDIUM", "CRITICAL", "LOW", "HIGH", "MEDIUM", "CRITICAL", "HIGH"]
    tasks = [await submit(client, "on-b", f"{p}-{i}", log, p) for i, p in enumerate(order)]
    nc = await nats.connect(nats_server.url)
    try:
        for priority in ("critical", "high", "medium", "low"):  # all stored, none taken
            await pending_in(nc.jetstream(), "pool-b", priority, 2)
        one_at_a_time = Worker(nc, worker_id="wb", concurrency=1, pools=["pool-b"])
        running = asyncio.create_task(one_at_a_time.run())
        try:
            for task_id in tasks:
                await until(client, task_id, "COMPLETED")
        finally:
            one_at_a_time.stop()
            await asyncio.wait_for(running, 30)
    finally:
        await nc.close()
    ran = [line.split("-")[0] for line in log.read_text().split()]
    assert ran == ["CRITICAL"] * 2 + ["HIGH"] * 2 + ["MEDIUM"] * 2 + ["LOW"] * 2


@pytest.mark.parametrize("executor", ["GPU", "gpu.large", "", 5])
def test_a_bad_pool_name_stops_the_load_naming_the_file_and_the_field(
    database_url: str, tmp_path: Path, executor: Any
) -> None:
    folder = tmp_path / "definitions"
    folder.mkdir()
    (folder / "bad.json").write_text(json.dumps(definition("bad", executor)))
    settings = Settings(database_url=database_url, definitions_dir=folder, var_dir=tmp_path)
    with pytest.raises(DefinitionFileError) as refused:
        Runtime.open(settings)
    assert f"{folder / 'bad.json'}: bad: executionConfig.executor " in str(refused.value)
