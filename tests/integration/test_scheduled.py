"""Scheduled tasks end to end (issue 24, item 1) on SQLite and PostgreSQL: the real app,
its relay and a real worker against nats-server. A task submitted with ``scheduledAt`` or
``delaySeconds`` is PENDING with its time shown until it is due, then starts within a
second; its work waits in JetStream as a message schedule; a cancel before its time keeps
it from running; the ``submitted`` CloudEvent carries the time. The relay publishes
through both of its ways (frames below nats-py, and nats-py's public calls)."""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats
import pytest
from litestar.testing import AsyncTestClient

from api.runtime import Runtime
from tests.worker_stack import app_with_worker
from workers.nats_server import EmbeddedNatsServer
from workers.protocol import EVENTS_STREAM, WORK_STREAM, schedule_subject

TASKS = "/api/v1/tasks"
HANDLERS = {
    "sched_handlers": textwrap.dedent(
        """
        import pathlib, time

        def stamp(payload, context):
            pathlib.Path(payload["path"]).write_text(str(time.time()))
            return {"ran": True}
        """
    )
}
DEFINITION = {
    "id": "stamp",
    "name": "stamp",
    "type": "AUTOMATED",
    "version": "1",
    "timeout": 10_000,
    "executionConfig": {"handler": "sched_handlers:stamp"},
}
Api = tuple[AsyncTestClient[Any], Runtime]


@pytest.fixture(params=[True, False], ids=["wire", "public"])
async def api(
    request: pytest.FixtureRequest,
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
        handlers=HANDLERS,
        definitions=[DEFINITION],
        fast_nats_wire=request.param,
    ) as stack:
        yield stack


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def task_when(client: AsyncTestClient[Any], task_id: str, status: str) -> dict[str, Any]:
    for _ in range(300):
        body: dict[str, Any] = (await client.get(f"{TASKS}/{task_id}")).json()
        if body["status"] == status:
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"task {task_id} never {status}: {body}")


async def test_a_scheduled_task_waits_pending_then_starts_on_time(
    api: Api, nats_server: EmbeddedNatsServer, tmp_path: Path
) -> None:
    client, _ = api
    due = datetime.now(UTC) + timedelta(seconds=2)
    ran = tmp_path / "ran"
    answer = await client.post(
        TASKS,
        json={
            "taskDefinitionId": "stamp",
            "input": {"path": str(ran)},
            "scheduledAt": rfc3339(due),
        },
    )
    assert answer.status_code == 201, answer.text
    task_id = answer.json()["id"]
    shown = (await client.get(f"{TASKS}/{task_id}")).json()
    assert (shown["status"], shown["attempts"]) == ("PENDING", 0)
    assert shown["scheduledAt"] == shown["nextAttemptAt"] == rfc3339(due)
    listed = (await client.get(TASKS)).json()["items"]
    assert [item["scheduledAt"] for item in listed if item["id"] == task_id] == [rfc3339(due)]

    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        for _ in range(100):  # the relay has published it: the schedule waits in TASK_WORK
            try:
                held = await js.get_last_msg(WORK_STREAM, schedule_subject(task_id))
                break
            except nats.js.errors.NotFoundError:
                await asyncio.sleep(0.05)
        assert held.headers is not None
        assert held.headers["Nats-Schedule"] == f"@at {rfc3339(due)}"
        assert not ran.exists()

        done = await task_when(client, task_id, "COMPLETED")
        started = instant(done["executionMetadata"]["startTime"])
        assert due <= started < due + timedelta(seconds=1)
        assert done["scheduledAt"] == rfc3339(due) and done["nextAttemptAt"] is None
        assert float(ran.read_text()) >= due.timestamp()

        submitted = await js.get_last_msg(EVENTS_STREAM, "tasks.events.submitted")
        assert json.loads(submitted.data or b"")["data"]["scheduledAt"] == rfc3339(due)
    finally:
        await nc.close()


async def test_bulk_items_are_scheduled_each_their_own_way(api: Api, tmp_path: Path) -> None:
    client, _ = api
    now = datetime.now(UTC)
    items = [
        {"taskDefinitionId": "stamp", "input": {"path": str(tmp_path / "a")}, "delaySeconds": 1},
        {
            "taskDefinitionId": "stamp",
            "input": {"path": str(tmp_path / "b")},
            "scheduledAt": rfc3339(now - timedelta(hours=1)),  # past: at once
        },
        {"taskDefinitionId": "stamp", "input": {"path": str(tmp_path / "c")}},
    ]
    answer = await client.post(f"{TASKS}/bulk", json={"tasks": items})
    assert answer.status_code == 200, answer.text
    ids = [item["task"]["id"] for item in answer.json()["items"]]
    delayed = (await client.get(f"{TASKS}/{ids[0]}")).json()
    due = instant(delayed["scheduledAt"])
    assert now + timedelta(seconds=1) <= due < now + timedelta(seconds=3)
    past, plain = (
        (await task_when(client, ids[1], "COMPLETED")),
        await task_when(client, ids[2], "COMPLETED"),
    )
    assert past["scheduledAt"] == rfc3339(now - timedelta(hours=1)) and plain["scheduledAt"] is None
    done = await task_when(client, ids[0], "COMPLETED")
    assert due <= instant(done["executionMetadata"]["startTime"]) < due + timedelta(seconds=1)


async def test_a_task_cancelled_before_its_time_never_runs(
    api: Api, nats_server: EmbeddedNatsServer, tmp_path: Path
) -> None:
    """Due in a second or in a year: the cancel replaces its schedule with one the workers
    drop as cancelled, and nothing of it is left in TASK_WORK."""
    client, _ = api
    soon, far = tmp_path / "soon", tmp_path / "far"
    year = rfc3339(datetime.now(UTC) + timedelta(days=365))
    bodies = [
        {"taskDefinitionId": "stamp", "input": {"path": str(soon)}, "delaySeconds": 1},
        {"taskDefinitionId": "stamp", "input": {"path": str(far)}, "scheduledAt": year},
    ]
    ids = [(await client.post(TASKS, json=body)).json()["id"] for body in bodies]
    for task_id in ids:
        cancelled = await client.post(f"{TASKS}/{task_id}/cancel", json={"reason": "not today"})
        assert cancelled.status_code == 200, cancelled.text
    # A task due after the replacements fired: once it ran, they had come and gone.
    later = {"taskDefinitionId": "stamp", "input": {"path": str(tmp_path / "later")}}
    later_id = (await client.post(TASKS, json={**later, "delaySeconds": 2})).json()["id"]
    await task_when(client, later_id, "COMPLETED")
    nc = await nats.connect(nats_server.url)
    try:
        for _ in range(100):  # the dropped work is acked
            if not (await nc.jetstream().stream_info(WORK_STREAM)).state.messages:
                break
            await asyncio.sleep(0.05)
        assert (await nc.jetstream().stream_info(WORK_STREAM)).state.messages == 0
    finally:
        await nc.close()
    for task_id in ids:
        shown = (await client.get(f"{TASKS}/{task_id}")).json()
        assert (shown["status"], shown["attempts"], shown["nextAttemptAt"]) == (
            "CANCELLED",
            0,
            None,
        )
    assert not soon.exists() and not far.exists()


async def test_bad_schedules_are_refused_naming_the_field(api: Api) -> None:
    client, _ = api
    now = datetime.now(UTC)
    base: dict[str, Any] = {"taskDefinitionId": "stamp", "input": {"path": "/nonexistent"}}
    cases: list[tuple[dict[str, Any], str | None]] = [
        ({"scheduledAt": rfc3339(now), "delaySeconds": 1}, "scheduledAt"),
        ({"scheduledAt": "2030-01-01T00:00:00"}, "scheduledAt"),  # no offset
        ({"scheduledAt": "2030-02-30T00:00:00Z"}, "scheduledAt"),
        ({"scheduledAt": "soon"}, "scheduledAt"),
        ({"scheduledAt": 0}, None),  # not a string: no Unix times
        ({"delaySeconds": -1}, None),
        ({"delaySeconds": 10 * 365 * 86400 + 1}, None),
    ]
    for extra, field in cases:
        answer = await client.post(TASKS, json={**base, **extra})
        assert answer.status_code == 400, (extra, answer.text)
        error = answer.json()["error"]
        assert error["code"] == "VALIDATION_ERROR"
        if field is not None:
            assert error["details"]["field"] == field, error
    bulk = {"tasks": [base, {**base, "delaySeconds": 5, "scheduledAt": rfc3339(now)}]}
    answer = await client.post(f"{TASKS}/bulk", json=bulk)
    assert answer.status_code == 400
    assert answer.json()["error"]["details"]["field"] == "tasks[1].scheduledAt"
    assert (await client.get(TASKS)).json()["pagination"]["totalItems"] == 0


async def test_an_idempotent_retry_is_the_same_schedule(api: Api) -> None:
    client, _ = api
    due = rfc3339(datetime.now(UTC) + timedelta(days=1))
    body = {"taskDefinitionId": "stamp", "input": {"path": "/nonexistent"}, "scheduledAt": due}
    key = {"Idempotency-Key": "sched-1"}
    first = await client.post(TASKS, json=body, headers=key)
    again = await client.post(TASKS, json=body, headers=key)
    assert (first.status_code, again.status_code) == (201, 200)
    other = await client.post(
        TASKS, json={**body, "delaySeconds": 60, "scheduledAt": None}, headers=key
    )
    assert other.status_code == 422, other.text
    shown = (await client.get(f"{TASKS}/{first.json()['id']}")).json()
    assert (shown["status"], shown["scheduledAt"]) == ("PENDING", due)
