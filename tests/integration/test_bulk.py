"""POST /api/v1/tasks/bulk on the real app (SQLite and PostgreSQL): a result per item,
one transaction for all accepted items, read-your-writes, the documented maximum."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import IntegrityError
from litestar.testing import TestClient

from api.http.submission import MAX_BULK
from api.runtime import Runtime
from api.settings import Settings
from commands.catalog import DefinitionCatalog
from commands.messages import SubmitTask
from commands.persistence import DatabaseConfig, prepare_database
from commands.service import TaskService
from domain.task import Task
from domain.values import ANONYMOUS
from tests.conftest import EXAMPLE_INPUT
from tests.security_support import TASKS, api_client, assert_envelope, new_key

BULK = f"{TASKS}/bulk"
SUBMIT = {"taskDefinitionId": "calculate-order-total", "input": EXAMPLE_INPUT}


@pytest.fixture
def app(database_url: str, tmp_path: Path) -> Iterator[tuple[TestClient[Any], Runtime]]:
    settings = Settings(database_url=database_url, var_dir=tmp_path, rate_limit_bulk="off")
    with api_client(settings) as pair:
        yield pair


def task_events(runtime: Runtime) -> list[Any]:
    return [e for _, e in runtime.service.read_log(0, 10_000) if isinstance(e, Task.Submitted)]


def test_each_item_gets_its_own_result(app: tuple[TestClient[Any], Runtime]) -> None:
    client, runtime = app
    key = new_key(runtime)
    items = [
        SUBMIT,
        {**SUBMIT, "taskDefinitionId": "no-such-definition"},
        {**SUBMIT, "input": {"orderId": "A"}},
        {**SUBMIT, "idempotencyKey": "k-1", "priority": "HIGH"},
        {**SUBMIT, "idempotencyKey": "k-1", "priority": "HIGH"},  # the same again: one task
        {**SUBMIT, "idempotencyKey": "k-1", "priority": "LOW"},  # reused with another body
    ]
    response = client.post(BULK, json={"tasks": items}, headers={"X-API-Key": key})
    assert response.status_code == 200, response.text
    body = response.json()
    results = body["items"]
    assert [r["index"] for r in results] == list(range(6))
    assert [r["statusCode"] for r in results] == [201, 404, 422, 201, 200, 422]
    assert (body["created"], body["replayed"], body["failed"]) == (2, 1, 3)
    assert results[1]["error"]["code"] == "NOT_FOUND"
    assert results[2]["error"]["code"] == "VALIDATION_ERROR"
    assert results[2]["error"]["details"]["field"] == "input"
    assert results[5]["error"]["details"]["field"] == "Idempotency-Key"
    assert results[3]["task"] == results[4]["task"]
    assert set(results[0]["task"]) == {"id", "status", "createdAt"}
    assert "error" not in results[0] and "task" not in results[1]

    created = [results[0]["task"]["id"], results[3]["task"]["id"]]
    assert sorted(str(e.originator_id) for e in task_events(runtime)) == sorted(created)
    for task_id in created:  # read-your-writes: readable the moment the response is there
        assert client.get(f"{TASKS}/{task_id}", headers={"X-API-Key": key}).status_code == 200
    key_id = key.split("_")[1]
    assert {e.actor["id"] for e in task_events(runtime)} == {key_id}


def test_a_retried_bulk_request_creates_nothing_new(app: tuple[TestClient[Any], Runtime]) -> None:
    client, runtime = app
    headers = {"X-API-Key": new_key(runtime)}
    items = [{**SUBMIT, "idempotencyKey": f"line-{n}"} for n in range(5)]
    first = client.post(BULK, json={"tasks": items}, headers=headers).json()
    again = client.post(BULK, json={"tasks": items}, headers=headers).json()
    assert [r["statusCode"] for r in first["items"]] == [201] * 5
    assert [r["statusCode"] for r in again["items"]] == [200] * 5
    assert [r["task"]["id"] for r in again["items"]] == [r["task"]["id"] for r in first["items"]]
    assert len(task_events(runtime)) == 5
    # A single submit with one of those keys finds the same task.
    single = client.post(TASKS, json=SUBMIT, headers={**headers, "Idempotency-Key": "line-3"})
    assert (single.status_code, single.json()["id"]) == (200, first["items"][3]["task"]["id"])


def test_the_documented_maximum(app: tuple[TestClient[Any], Runtime]) -> None:
    client, runtime = app
    headers = {"X-API-Key": new_key(runtime)}
    full = client.post(BULK, json={"tasks": [SUBMIT] * MAX_BULK}, headers=headers)
    assert full.status_code == 200, full.text
    assert full.json()["created"] == MAX_BULK == 500
    before = runtime.service.recorder.max_notification_id()
    for tasks in ([SUBMIT] * (MAX_BULK + 1), []):
        response = client.post(BULK, json={"tasks": tasks}, headers=headers)
        error = assert_envelope(response, 400, "VALIDATION_ERROR")
        assert "tasks" in error["message"]
    assert runtime.service.recorder.max_notification_id() == before


def test_a_malformed_item_refuses_the_whole_request(app: tuple[TestClient[Any], Runtime]) -> None:
    client, runtime = app
    before = runtime.service.recorder.max_notification_id()
    bad_items: list[dict[str, Any]] = [
        {**SUBMIT, "priority": "URGENT"},
        {**SUBMIT, "surprise": 1},
        {"input": {}},
    ]
    for bad in bad_items:
        response = client.post(
            BULK, json={"tasks": [SUBMIT, bad]}, headers={"X-API-Key": new_key(runtime)}
        )
        error = assert_envelope(response, 400, "VALIDATION_ERROR")
        assert "tasks[1]" in error["message"]
    assert len(task_events(runtime)) == 0
    assert before is not None


@pytest.fixture
def service_with_ids(database_url: str) -> Iterator[tuple[TaskService, list[UUID]]]:
    ids: list[UUID] = []
    config = DatabaseConfig.from_url(database_url)
    prepare_database(config)
    svc = TaskService(config.eventsourcing_env(), DefinitionCatalog.load(), new_id=ids.pop)
    yield svc, ids
    svc.close()


def test_accepted_items_are_saved_in_one_transaction(
    service_with_ids: tuple[TaskService, list[UUID]],
) -> None:
    """If one accepted item cannot be stored, none is: all or nothing."""
    service, ids = service_with_ids
    taken = uuid4()
    ids.append(taken)
    service.submit(SubmitTask("calculate-order-total", EXAMPLE_INPUT, ANONYMOUS))
    position = service.recorder.max_notification_id()

    fresh_first, fresh_last = uuid4(), uuid4()
    ids.extend([fresh_last, taken, fresh_first])  # popped from the end: first, taken, last
    cmd = SubmitTask("calculate-order-total", EXAMPLE_INPUT, ANONYMOUS)
    with pytest.raises(IntegrityError):
        service.submit_many([cmd, cmd, cmd])
    assert service.recorder.max_notification_id() == position
    for task_id in (fresh_first, fresh_last):
        with pytest.raises(Exception, match="not found"):
            service.load(task_id)

    ids.extend([uuid4(), uuid4(), uuid4()])
    results = service.submit_many([cmd, cmd, cmd])
    positions = sorted(r.position for r in results if not isinstance(r, Exception))
    assert len(positions) == 3
    assert positions[0] > (position or 0)
