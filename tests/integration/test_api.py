"""The REST API over the real stack (SQLite and PostgreSQL; a real nats-server)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from litestar.testing import TestClient

from api.http.app import create_app
from api.runtime import Runtime
from api.settings import Settings
from domain.task import Task
from tests.conftest import EXAMPLE_INPUT
from tests.security_support import assert_envelope, new_key
from workers.nats_server import EmbeddedNatsServer

TASKS = "/api/v1/tasks"
EXAMPLE = {
    "taskDefinitionId": "calculate-order-total",
    "workflowInstanceId": "order-workflow-789",
    "input": EXAMPLE_INPUT,
    "priority": "HIGH",
    "executionConfig": {
        "timeout": 3600000,
        "retryPolicy": {"maxRetries": 3, "retryInterval": 60000, "backoffMultiplier": 2},
    },
}


@pytest.fixture
def runtime(database_url: str, tmp_path: Path) -> Iterator[Runtime]:
    runtime = Runtime.open(Settings(database_url=database_url, var_dir=tmp_path))
    yield runtime
    runtime.close()  # the app's lifespan closed it already, if a client ran


@pytest.fixture
def client(runtime: Runtime, nats_server: EmbeddedNatsServer) -> Iterator[TestClient[Any]]:
    with TestClient(create_app(runtime, nats_server.url)) as test_client:
        # Every endpoint but /health and the docs needs credentials: an all-permission key.
        test_client.headers["X-API-Key"] = new_key(runtime)
        yield test_client


def nothing_recorded(runtime: Runtime) -> bool:
    """No task event at all is in the store (definitions are recorded at start)."""
    task_topics = [Task.Submitted.TOPIC, Task.Cancelled.TOPIC]
    found = runtime.service.recorder.select_notifications(None, 100, topics=task_topics)
    return list(found) == []


def test_submit_then_read_at_once(client: TestClient[Any]) -> None:
    created = client.post(TASKS, json=EXAMPLE)
    assert created.status_code == 201, created.text
    body = created.json()
    assert set(body) == {"id", "status", "createdAt"}
    assert body["status"] == "PENDING"
    assert body["createdAt"].endswith("Z")
    assert created.headers["location"] == f"{TASKS}/{body['id']}"

    # Read-your-writes: readable by id the moment the 201 is returned.
    task = client.get(created.headers["location"])
    assert task.status_code == 200, task.text
    detail = task.json()
    assert detail["id"] == body["id"]
    assert detail["taskDefinitionId"] == "calculate-order-total"
    assert detail["workflowInstanceId"] == "order-workflow-789"
    assert detail["status"] == "PENDING"  # no worker runs in this test
    assert detail["type"] == "AUTOMATED"
    assert detail["priority"] == "HIGH"
    assert detail["input"] == EXAMPLE_INPUT
    assert detail["createdAt"] == body["createdAt"]
    assert set(detail["executionMetadata"]) == {
        "startTime",
        "endTime",
        "duration",
        "executionEnvironment",
    }
    for key in ("output", "updatedAt", "error", "attempts", "definitionVersion"):
        assert key in detail


def test_unknown_definition_is_404_and_records_nothing(
    client: TestClient[Any], runtime: Runtime
) -> None:
    response = client.post(TASKS, json={**EXAMPLE, "taskDefinitionId": "nope"})
    error = assert_envelope(response, 404, "NOT_FOUND")
    assert "nope" in error["message"]
    assert nothing_recorded(runtime)


def test_input_breaking_the_schema_is_422_with_every_violation(
    client: TestClient[Any], runtime: Runtime
) -> None:
    bad_input = {"items": [{"id": "A", "quantity": "2"}]}
    response = client.post(TASKS, json={**EXAMPLE, "input": bad_input})
    error = assert_envelope(response, 422, "VALIDATION_ERROR")
    violations = error["details"]["violations"]
    assert {"path": "$", "message": "'orderId' is a required property"} in violations
    assert {"path": "$.items[0]", "message": "'price' is a required property"} in violations
    assert {"path": "$.items[0].quantity", "message": "'2' is not of type 'number'"} in violations
    assert nothing_recorded(runtime)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", None),
        (b"[]", None),
        (b'{"input": {}}', "taskDefinitionId"),
        (b'{"taskDefinitionId": 7}', "taskDefinitionId"),
        (b'{"taskDefinitionId": "calculate-order-total", "input": [1]}', "input"),
        (b'{"taskDefinitionId": "calculate-order-total", "priority": "URGENT"}', "priority"),
        (
            b'{"taskDefinitionId": "calculate-order-total", "executionConfig": {"timeout": -1}}',
            "executionConfig.timeout",
        ),
        (b'{"taskDefinitionId": "calculate-order-total", "surprise": 1}', "surprise"),
        # Nested deeper than the decoder goes (it stops with a RecursionError): 400, not 500.
        (
            b'{"taskDefinitionId": "calculate-order-total", "input": {"x": '
            + b"[" * 100_000
            + b"]" * 100_000
            + b"}}",
            None,
        ),
    ],
)
def test_malformed_requests_are_400_and_record_nothing(
    client: TestClient[Any], runtime: Runtime, body: bytes, field: str | None
) -> None:
    response = client.post(TASKS, content=body, headers={"content-type": "application/json"})
    error = assert_envelope(response, 400, "VALIDATION_ERROR")
    if field is not None:
        assert field in error["message"]
    assert nothing_recorded(runtime)


def test_unknown_task_ids_are_404(client: TestClient[Any]) -> None:
    assert_envelope(client.get(f"{TASKS}/00000000-0000-4000-8000-000000000000"), 404, "NOT_FOUND")
    assert_envelope(client.get(f"{TASKS}/not-a-uuid"), 404, "NOT_FOUND")


def test_cancel_pending_then_conflict_then_unknown(client: TestClient[Any]) -> None:
    # MANUAL-like wait: no worker runs in this test, so the task stays PENDING.
    task_id = client.post(TASKS, json=EXAMPLE).json()["id"]
    response = client.post(f"{TASKS}/{task_id}/cancel", json={"reason": "stop", "force": False})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["id"], body["status"]) == (task_id, "CANCELLED")
    assert body["updatedAt"].endswith("Z")
    assert client.get(f"{TASKS}/{task_id}").json()["status"] == "CANCELLED"

    error = assert_envelope(client.post(f"{TASKS}/{task_id}/cancel", json={}), 409, "CONFLICT")
    assert "CANCELLED" in error["message"]
    assert_envelope(
        client.post(f"{TASKS}/00000000-0000-4000-8000-000000000000/cancel", json={}),
        404,
        "NOT_FOUND",
    )


def test_cancel_without_a_body_and_with_a_bad_one(client: TestClient[Any]) -> None:
    first = client.post(TASKS, json=EXAMPLE).json()["id"]
    second = client.post(TASKS, json=EXAMPLE).json()["id"]
    assert client.post(f"{TASKS}/{first}/cancel").json()["status"] == "CANCELLED"
    assert_envelope(
        client.post(f"{TASKS}/{second}/cancel", json={"force": "yes"}), 400, "VALIDATION_ERROR"
    )
    assert client.get(f"{TASKS}/{second}").json()["status"] == "PENDING"


def test_unknown_routes_and_wrong_methods_use_the_envelope(client: TestClient[Any]) -> None:
    assert_envelope(client.get("/api/v1/nowhere"), 404, "NOT_FOUND")
    response = client.delete(TASKS)
    assert_envelope(response, 405, "METHOD_NOT_ALLOWED")
    assert "POST" in response.headers.get("allow", "")


def test_health_and_openapi(client: TestClient[Any]) -> None:
    health = client.get("/health")
    assert health.status_code == 200
    assert health.json() == {
        "status": "ok",
        "checks": {"database": True, "projection": True, "nats": True},
    }
    spec = client.get("/schema/openapi.json")
    assert spec.status_code == 200
    paths = spec.json()["paths"]
    assert {"/api/v1/tasks", "/api/v1/tasks/{taskId}", "/api/v1/tasks/{taskId}/cancel"} <= set(
        paths
    )


def test_health_is_503_without_nats(runtime: Runtime) -> None:
    with TestClient(create_app(runtime, None)) as client:
        response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["checks"]["nats"] is False


def test_on_started_runs_once_everything_is_open(
    runtime: Runtime, nats_server: EmbeddedNatsServer
) -> None:
    """``serve`` settles its heap in ``on_started``: after the runtime and messaging are
    up (what exists then lives as long as the process), before the first request."""
    seen: list[tuple[bool, bool]] = []

    def started() -> None:
        seen.append((runtime.runner.position > 0, runtime.nats_connected))

    with TestClient(create_app(runtime, nats_server.url, on_started=started)) as client:
        assert seen == [(True, True)]  # definitions applied, NATS connected
        assert client.get("/health").status_code == 200
    assert len(seen) == 1


def test_a_nul_character_in_free_text_does_not_stop_the_read_models(
    runtime: Runtime, client: TestClient[Any]
) -> None:
    """U+0000 in a workflow id or a cancel reason (any caller may send one): PostgreSQL's
    text cannot hold it, and the batch holding it used to fail and stop the projection.
    The read model keeps U+FFFD instead, on both backends; the store keeps what came."""
    from projections.audit.verify import Verifier
    from projections.db import Database

    created = client.post(TASKS, json={**EXAMPLE, "workflowInstanceId": "wf\u0000a"})
    assert created.status_code == 201, created.text
    task_id = created.json()["id"]
    cancelled = client.post(f"{TASKS}/{task_id}/cancel", json={"reason": "oops\u0000"})
    assert cancelled.status_code == 200, cancelled.text
    after = client.post(TASKS, json=EXAMPLE)  # the projection goes on
    assert after.status_code == 201
    assert runtime.runner.error is None
    assert client.get(f"{TASKS}/{after.json()['id']}").status_code == 200
    listed = client.get(TASKS, params={"workflowInstanceId": "wf\ufffda"}).json()
    assert [t["id"] for t in listed["items"]] == [task_id]
    stored = runtime.service.load(UUID(task_id))
    assert (stored.workflow_instance_id, stored.cancel_reason) == ("wf\u0000a", "oops\u0000")
    db = Database(runtime.db_config)
    try:
        report = Verifier(runtime.service, db).run()
    finally:
        db.close()
    assert report.ok, [str(p) for p in report.problems]
