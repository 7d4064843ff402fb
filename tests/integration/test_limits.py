"""Concurrency limits end to end (issue 24, item 2) on SQLite and PostgreSQL: the real app,
its relay and THREE real workers (concurrency 4 each) against nats-server. A definition
with ``maxConcurrency: 2`` whose handler records each attempt's start and end: never more
than two overlap, and two do (the limit is used, not one at a time); another definition's
tasks on the same workers complete while the limited ones wait; a CRITICAL task waiting
for a slot starts before the LOW ones that waited longer. A bad limit stops the load of
the definitions, naming the file and the field. (The slots underneath:
tests/integration/test_limit_slots.py; a worker killed holding a slot:
tests/faults/test_limit_faults.py.)"""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import nats
import pytest
from litestar.testing import AsyncTestClient

from api.runtime import Runtime
from api.settings import Settings
from commands.catalog import DefinitionFileError
from commands.messages import SubmitTask
from domain.values import ANONYMOUS
from tests.worker_stack import app_with_worker
from workers.executor import Worker
from workers.limit_subjects import (
    SLOTS_STREAM,
    limit_token,
    limited_consumer,
    limited_subject,
    slot_consumer,
)
from workers.nats_server import EmbeddedNatsServer
from workers.protocol import WORK_STREAM, work_decoder

TASKS = "/api/v1/tasks"
HANDLERS = {
    "limit_handlers": textwrap.dedent(
        """
        import pathlib, time, uuid

        def record(payload, context):
            # One line per event, appended: "start <run> <name> <ns>", "end <run> ...".
            folder = pathlib.Path(payload["dir"])
            run, name = uuid.uuid4().hex, payload["name"]
            def note(kind):
                with open(folder / "events", "a") as events:
                    events.write(f"{kind} {run} {name} {time.monotonic_ns()}\\n")
            note("start")
            waited = 0
            while payload.get("gated") and not (folder / "gate").exists() and waited < 3000:
                time.sleep(0.01)  # at most 30 s: a failed test ends, its handlers too
                waited += 1
            time.sleep(payload.get("seconds", 0.05))
            note("end")
            return {"name": name}
        """
    )
}


def definition(name: str, limit: Any = None) -> dict[str, Any]:
    config: dict[str, Any] = {"handler": "limit_handlers:record"}
    if limit is not None:
        config["maxConcurrency"] = limit
    return {
        "id": name,
        "name": name,
        "type": "AUTOMATED",
        "version": "1",
        "executionConfig": config,
    }


DEFINITIONS = [definition("Limited.Two", 2), definition("limited-one", 1), definition("free")]
Api = tuple[AsyncTestClient[Any], Runtime]


@pytest.fixture
async def api(
    database_url: str,
    nats_server: EmbeddedNatsServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Api]:
    """The app and three workers (``w``, ``w2``, ``w3``), concurrency 4 each."""
    async with (
        app_with_worker(
            database_url=database_url,
            nats_url=nats_server.url,
            tmp_path=tmp_path,
            monkeypatch=monkeypatch,
            handlers=HANDLERS,
            definitions=DEFINITIONS,
        ) as stack,
        more_workers(nats_server.url, ["w2", "w3"]),
    ):
        yield stack


@asynccontextmanager
async def more_workers(url: str, names: list[str]) -> AsyncIterator[None]:
    nc = await nats.connect(url)
    workers = [Worker(nc, worker_id=name, concurrency=4) for name in names]
    running = [asyncio.create_task(worker.run()) for worker in workers]
    try:
        yield
    finally:
        for worker in workers:
            worker.stop()
        await asyncio.wait_for(asyncio.gather(*running), 30)
        await nc.close()


async def submit(
    client: AsyncTestClient[Any], definition_id: str, name: str, folder: Path, **extra: Any
) -> str:
    body = {"taskDefinitionId": definition_id, "priority": extra.pop("priority", "MEDIUM")}
    if "delay" in extra:
        body["delaySeconds"] = extra.pop("delay")
    body["input"] = {"name": name, "dir": str(folder), **extra}
    answer = await client.post(TASKS, json=body)
    assert answer.status_code == 201, answer.text
    task_id: str = answer.json()["id"]
    return task_id


async def until(client: AsyncTestClient[Any], task_id: str, status: str) -> dict[str, Any]:
    for _ in range(1200):
        body: dict[str, Any] = (await client.get(f"{TASKS}/{task_id}")).json()
        if body["status"] == status:
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"task {task_id} never {status}: {body}")


def events(folder: Path) -> list[tuple[str, str, str, int]]:
    """(kind, run, name, ns) of every recorded start and end, in time order (an end
    before a start at the same instant: overlaps are never overstated)."""
    path = folder / "events"
    lines = path.read_text().split("\n") if path.exists() else []
    found = [(k, r, n, int(t)) for k, r, n, t in (line.split() for line in lines if line)]
    return sorted(found, key=lambda e: (e[3], e[0] == "start"))


def most_at_once(recorded: list[tuple[str, str, str, int]], prefix: str = "") -> int:
    """The most attempts (of tasks named ``prefix…``) running at one moment."""
    running = most = 0
    for kind, _, name, _ in recorded:
        if name.startswith(prefix):
            running += 1 if kind == "start" else -1
            most = max(most, running)
    return most


async def started(folder: Path, count: int, prefix: str) -> None:
    for _ in range(600):
        if sum(1 for e in events(folder) if e[0] == "start" and e[2].startswith(prefix)) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never {count} starts of {prefix}: {events(folder)}")


async def test_never_more_than_the_limit_at_once_and_other_work_is_not_held_up(
    api: Api, tmp_path: Path
) -> None:
    client, _ = api
    folder = tmp_path / "runs"
    folder.mkdir()
    limited = [
        await submit(client, "Limited.Two", f"lim{i}", folder, gated=True) for i in range(22)
    ]
    await started(folder, 2, "lim")  # both slots taken, held at the gate
    free = [await submit(client, "free", f"free{i}", folder) for i in range(8)]
    for task_id in free:  # the other definition runs on the same workers meanwhile
        await until(client, task_id, "COMPLETED")
    held = [e for e in events(folder) if e[2].startswith("lim")]
    assert [e[0] for e in held] == ["start", "start"]  # no third while two hold the slots
    (folder / "gate").touch()
    workers = set()
    for task_id in limited:
        done = await until(client, task_id, "COMPLETED")
        workers.add(done["executionMetadata"]["executionEnvironment"])
    recorded = events(folder)
    assert sum(1 for e in recorded if e[0] == "start" and e[2].startswith("lim")) == 22
    assert most_at_once(recorded, "lim") == 2  # never more, and the limit was used
    assert most_at_once(recorded, "free") >= 2  # the free ones ran side by side
    assert len(workers) >= 2  # the slots are the workers', not one worker's


async def test_a_critical_task_waiting_for_a_slot_starts_before_the_lows(
    api: Api, nats_server: EmbeddedNatsServer, tmp_path: Path
) -> None:
    client, _ = api
    folder = tmp_path / "runs"
    folder.mkdir()
    holder = await submit(client, "limited-one", "hold", folder, gated=True, priority="HIGH")
    await started(folder, 1, "hold")  # the one slot is taken
    lows = [
        await submit(client, "limited-one", f"low{i}", folder, priority="LOW") for i in range(4)
    ]
    critical = await submit(client, "limited-one", "critical", folder, priority="CRITICAL")
    nc = await nats.connect(nats_server.url)
    try:  # the critical task's work is stored, waiting for the slot, before it frees
        js = nc.jetstream()
        name = limited_consumer("standard-executor", limit_token("limited-one"), "critical")
        for _ in range(200):
            if (await js.consumer_info(WORK_STREAM, name)).num_pending == 1:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the critical task's work was never stored")
    finally:
        await nc.close()
    (folder / "gate").touch()
    for task_id in [holder, critical, *lows]:
        await until(client, task_id, "COMPLETED")
    order = [e[2] for e in events(folder) if e[0] == "start"]
    assert order[:2] == ["hold", "critical"]  # then the lows, one at a time
    assert sorted(order[2:]) == [f"low{i}" for i in range(4)]
    assert most_at_once(events(folder)) == 1


async def test_a_scheduled_limited_task_fires_into_its_queue_and_runs(
    api: Api, tmp_path: Path
) -> None:
    client, _ = api
    folder = tmp_path / "runs"
    folder.mkdir()
    await until(client, await submit(client, "limited-one", "later", folder, delay=1), "COMPLETED")
    assert [e[2] for e in events(folder) if e[0] == "start"] == ["later"]


async def test_a_limited_tasks_lost_work_is_published_again_with_its_queues_and_slots(
    database_url: str, nats_server: EmbeddedNatsServer, tmp_path: Path
) -> None:
    """Its work purged and its consumers deleted (a stream made again, say): the lost-work
    check remakes the queue and the slots and publishes the work to the limited subject."""
    folder = tmp_path / "definitions"
    folder.mkdir()
    (folder / "limited.json").write_text(json.dumps(definition("Limited.Two", 2)))
    settings = Settings(
        database_url=database_url, definitions_dir=folder, var_dir=tmp_path, rate_limit="off"
    )
    runtime = await asyncio.to_thread(Runtime.open, settings)
    await runtime.start_messaging(nats_server.url)
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        command = SubmitTask(definition_id="Limited.Two", input={}, actor=ANONYMOUS)
        task = await asyncio.to_thread(runtime.submit, command)
        token = limit_token("Limited.Two")
        subject = limited_subject("standard-executor", token, "medium")
        for _ in range(300):  # the relay made the queue and the slots, then published
            if (await js.stream_info(WORK_STREAM)).state.messages == 1:
                break
            await asyncio.sleep(0.05)
        await js.purge_stream(WORK_STREAM)
        await js.delete_consumer(
            WORK_STREAM, limited_consumer("standard-executor", token, "medium")
        )
        await js.delete_consumer(SLOTS_STREAM, slot_consumer(token))
        for _ in range(300):
            if runtime.runner.position >= task.position:
                break
            await asyncio.sleep(0.05)

        assert await runtime.reconcile_lost_work(after_s=0) == 1
        msg = await js.get_last_msg(WORK_STREAM, subject)
        assert work_decoder.decode(msg.data or b"").max_concurrency == 2
        slots = await js.consumer_info(SLOTS_STREAM, slot_consumer(token))
        assert slots.config.max_ack_pending == 2 and slots.num_pending == 2
        assert await runtime.reconcile_lost_work(after_s=0) == 0  # in its queue now
    finally:
        await nc.close()
        await runtime.stop_messaging()
        await asyncio.to_thread(runtime.close)


@pytest.mark.parametrize("limit", [0, -1, 10_001, "2", 1.5, True])
def test_a_bad_limit_stops_the_load_naming_the_file_and_the_field(
    database_url: str, tmp_path: Path, limit: Any
) -> None:
    folder = tmp_path / "definitions"
    folder.mkdir()
    (folder / "bad.json").write_text(json.dumps(definition("bad", limit)))
    settings = Settings(database_url=database_url, definitions_dir=folder, var_dir=tmp_path)
    with pytest.raises(DefinitionFileError) as refused:
        Runtime.open(settings)
    assert f"{folder / 'bad.json'}: bad: executionConfig.maxConcurrency " in str(refused.value)
