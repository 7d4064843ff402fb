"""Idempotency-Key on submit over HTTP (SQLite and PostgreSQL): a retry gets the original
task, a reused key with another body is refused, and concurrent duplicates create one
task. The service's own cases (threads, replicas racing): tests/contract/test_batches.py."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from litestar.testing import AsyncTestClient, TestClient

from api.http.app import create_app
from api.runtime import Runtime
from api.settings import Settings
from domain.task import Task
from domain.values import Priority
from tests.conftest import EXAMPLE_INPUT
from tests.security_support import TASKS, api_client, assert_envelope, new_key

SUBMIT = {"taskDefinitionId": "calculate-order-total", "input": EXAMPLE_INPUT}


@pytest.fixture
def app(database_url: str, tmp_path: Path) -> Iterator[tuple[TestClient[Any], Runtime]]:
    settings = Settings(database_url=database_url, var_dir=tmp_path, rate_limit="off")
    with api_client(settings) as pair:
        yield pair


def submitted_events(runtime: Runtime, task_id: str) -> list[Any]:
    return [
        event
        for _, event in runtime.service.read_log(0, 10_000)
        if isinstance(event, Task.Submitted) and str(event.originator_id) == task_id
    ]


def test_a_retry_returns_the_original_task(app: tuple[TestClient[Any], Runtime]) -> None:
    client, runtime = app
    headers = {"X-API-Key": new_key(runtime), "Idempotency-Key": "order-789/attempt"}
    first = client.post(TASKS, json=SUBMIT, headers=headers)
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    again = client.post(TASKS, json=SUBMIT, headers=headers)
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["idempotent-replayed"] == "true"
    assert len(submitted_events(runtime, first.json()["id"])) == 1
    assert client.get(again.headers["location"], headers=headers).status_code == 200


def test_the_same_request_in_other_words_is_the_same_request(
    app: tuple[TestClient[Any], Runtime],
) -> None:
    client, runtime = app
    headers = {"X-API-Key": new_key(runtime), "Idempotency-Key": "k-1"}
    first = client.post(TASKS, json=SUBMIT, headers=headers).json()
    reordered = {"input": EXAMPLE_INPUT, "priority": "MEDIUM", **SUBMIT}  # default spelled out
    again = client.post(TASKS, json=reordered, headers=headers)
    assert (again.status_code, again.json()["id"]) == (200, first["id"])


def test_the_same_key_with_another_body_is_422(app: tuple[TestClient[Any], Runtime]) -> None:
    client, runtime = app
    headers = {"X-API-Key": new_key(runtime), "Idempotency-Key": "k-2"}
    first = client.post(TASKS, json=SUBMIT, headers=headers).json()
    other = client.post(TASKS, json={**SUBMIT, "priority": "HIGH"}, headers=headers)
    error = assert_envelope(other, 422, "VALIDATION_ERROR")
    assert error["details"] == {"field": "Idempotency-Key", "taskId": first["id"]}
    assert len(submitted_events(runtime, first["id"])) == 1
    task = runtime.service.load(UUID(first["id"]))
    assert task.priority is Priority.MEDIUM


def test_a_replay_shows_the_task_as_it_is_now(app: tuple[TestClient[Any], Runtime]) -> None:
    client, runtime = app
    headers = {"X-API-Key": new_key(runtime), "Idempotency-Key": "k-3"}
    first = client.post(TASKS, json=SUBMIT, headers=headers).json()
    client.post(f"{TASKS}/{first['id']}/cancel", json={}, headers=headers)
    again = client.post(TASKS, json=SUBMIT, headers=headers)
    assert (again.status_code, again.json()["status"]) == (200, "CANCELLED")
    assert again.json()["createdAt"] == first["createdAt"]


def test_keys_belong_to_their_principal(app: tuple[TestClient[Any], Runtime]) -> None:
    client, runtime = app
    mine = client.post(
        TASKS, json=SUBMIT, headers={"X-API-Key": new_key(runtime), "Idempotency-Key": "same"}
    )
    theirs = client.post(
        TASKS, json=SUBMIT, headers={"X-API-Key": new_key(runtime), "Idempotency-Key": "same"}
    )
    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert mine.json()["id"] != theirs.json()["id"]


@pytest.mark.parametrize("value", ["x" * 256, "with space", "tab\tinside"])
def test_an_unusable_key_is_400_and_records_nothing(
    app: tuple[TestClient[Any], Runtime], value: str
) -> None:
    client, runtime = app
    headers = {"X-API-Key": new_key(runtime)}
    before = runtime.service.recorder.max_notification_id()
    response = client.post(TASKS, json=SUBMIT, headers={**headers, "Idempotency-Key": value})
    error = assert_envelope(response, 400, "VALIDATION_ERROR")
    assert "idempotency" in error["message"].lower()
    assert error["details"]["source"] == "header"
    assert runtime.service.recorder.max_notification_id() == before


def test_a_non_ascii_key_is_400(app: tuple[TestClient[Any], Runtime]) -> None:
    client, runtime = app
    response = client.post(
        TASKS,
        json=SUBMIT,
        headers=[(b"X-API-Key", new_key(runtime).encode()), (b"Idempotency-Key", "clé".encode())],
    )
    assert_envelope(response, 400, "VALIDATION_ERROR")


async def test_concurrent_duplicates_over_http_create_one_task(
    database_url: str, tmp_path: Path
) -> None:
    runtime = Runtime.open(Settings(database_url=database_url, var_dir=tmp_path, rate_limit="off"))
    async with AsyncTestClient(app=create_app(runtime, None)) as client:
        key = await asyncio.to_thread(new_key, runtime)
        headers = {"X-API-Key": key, "Idempotency-Key": "burst"}
        responses = await asyncio.gather(
            *[client.post(TASKS, json=SUBMIT, headers=headers) for _ in range(20)]
        )
        assert sorted(r.status_code for r in responses) == [200] * 19 + [201]
        assert len({r.json()["id"] for r in responses}) == 1
        events = await asyncio.to_thread(submitted_events, runtime, responses[0].json()["id"])
        assert len(events) == 1
