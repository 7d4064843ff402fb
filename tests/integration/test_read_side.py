"""The read side over HTTP: task lists, task definitions, definitions recorded as events,
and rebuilds — on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from api.bootstrap import read_models
from api.http.app import create_app
from api.runtime import Runtime
from api.settings import Settings
from commands.messages import CancelTask, RecordReport, SubmitTask
from domain.values import ANONYMOUS, Priority
from projections.rebuild import Rebuilder
from tests.conftest import EXAMPLE_INPUT
from tests.security_support import new_key

TASKS = "/api/v1/tasks"
DEFINITIONS = "/api/v1/tasks/definitions"
PAYMENT = {"orderId": "A", "amount": 10, "currency": "EUR"}


@pytest.fixture
def runtime(database_url: str, tmp_path: Path) -> Iterator[Runtime]:
    runtime = Runtime.open(Settings(database_url=database_url, var_dir=tmp_path))
    yield runtime
    runtime.close()  # the app's lifespan closed it already, if a client ran


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient[Any]]:
    with TestClient(create_app(runtime, None)) as test_client:
        # Every endpoint but /health and the docs needs credentials: an all-permission key.
        test_client.headers["X-API-Key"] = new_key(runtime)
        yield test_client


def seed(runtime: Runtime) -> list[dict[str, Any]]:
    """25 tasks: two types, two workflows, four statuses. Returns them newest first."""
    made: list[dict[str, Any]] = []
    for i in range(25):
        payment = i % 3 == 0
        cmd = SubmitTask(
            definition_id="process-payment" if payment else "calculate-order-total",
            input=PAYMENT if payment else EXAMPLE_INPUT,
            actor=ANONYMOUS,
            workflow_instance_id=f"wf-{i % 2}",
            priority=Priority.LOW,
        )
        outcome = runtime.submit(cmd)
        status = "PENDING"
        if i % 4 == 1:
            runtime.cancel(CancelTask(outcome.task_id, ANONYMOUS))
            status = "CANCELLED"
        elif i % 4 == 2:
            now = datetime.now(UTC)
            runtime.service.record_reports(
                [RecordReport(outcome.task_id, 1, "started", "w", now)],
            )
            status = "RUNNING"
        made.append(
            {
                "id": str(outcome.task_id),
                "type": "INTEGRATION" if payment else "AUTOMATED",
                "workflowInstanceId": f"wf-{i % 2}",
                "status": status,
            }
        )
    runtime.runner.wait_for(runtime.service.recorder.max_notification_id() or 0, 5)
    made.reverse()
    return made


def all_pages(client: TestClient[Any], query: str, limit: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    page = 1
    while True:
        body = client.get(f"{TASKS}?{query}&page={page}&limit={limit}").json()
        if not body["items"]:
            return items
        items += body["items"]
        page += 1


def test_list_defaults_order_and_pagination(client: TestClient[Any], runtime: Runtime) -> None:
    tasks = seed(runtime)
    body = client.get(TASKS).json()
    assert body["pagination"] == {"page": 1, "limit": 20, "totalItems": 25, "totalPages": 2}
    assert [t["id"] for t in body["items"]] == [t["id"] for t in tasks[:20]]
    first = body["items"][0]
    assert set(first) == {
        "id",
        "taskDefinitionId",
        "status",
        "type",
        "workflowInstanceId",
        "createdAt",
        "updatedAt",
        "scheduledAt",  # beyond the spec: null, none of them is scheduled
        "tenant",  # beyond the spec: null, none of them is a tenant's
    }
    assert first["scheduledAt"] is None
    created = [t["createdAt"] for t in body["items"]]
    assert created == sorted(created, reverse=True)
    # Every page, also those read from the far end, in one stable order: no repeats, no gaps.
    assert [t["id"] for t in all_pages(client, "", 7)] == [t["id"] for t in tasks]


@pytest.mark.parametrize(
    "query",
    [
        "status=PENDING",
        "status=CANCELLED",
        "type=INTEGRATION",
        "workflowInstanceId=wf-1",
        "status=RUNNING&type=AUTOMATED",
        "status=PENDING&type=AUTOMATED&workflowInstanceId=wf-0",
        "type=MANUAL",
    ],
)
def test_filters_combine(client: TestClient[Any], runtime: Runtime, query: str) -> None:
    tasks = seed(runtime)
    wanted = dict(part.split("=") for part in query.split("&"))
    expected = [t["id"] for t in tasks if all(t[k] == v for k, v in wanted.items())]
    body = client.get(f"{TASKS}?{query}&limit=3").json()
    assert body["pagination"]["totalItems"] == len(expected)
    assert body["pagination"]["totalPages"] == -(-len(expected) // 3)
    assert [t["id"] for t in all_pages(client, query, 3)] == expected


def test_a_page_past_the_end_is_empty(client: TestClient[Any], runtime: Runtime) -> None:
    seed(runtime)
    response = client.get(f"{TASKS}?page=99")
    assert response.status_code == 200
    assert response.json() == {
        "items": [],
        "pagination": {"page": 99, "limit": 20, "totalItems": 25, "totalPages": 2},
    }


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("status=DONE", "status"),
        ("status=pending", "status"),
        ("type=ROBOT", "type"),
        ("status=null", "status"),  # Litestar alone reads the word as "not given"
        ("type=null&type=null", "type"),
        ("page=0", "page"),
        ("page=-1", "page"),
        ("page=abc", "page"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=100000", "limit"),
        ("limit=1.5", "limit"),
    ],
)
def test_invalid_list_parameters_are_400_naming_the_parameter(
    client: TestClient[Any], query: str, parameter: str
) -> None:
    response = client.get(f"{TASKS}?{query}")
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert parameter in error["message"]
    assert error["details"]["field"] == parameter


def test_definitions_list_search_and_detail(client: TestClient[Any]) -> None:
    body = client.get(DEFINITIONS).json()
    assert [d["id"] for d in body["items"]] == [
        "approve-refund",
        "calculate-order-total",
        "process-payment",
    ]
    assert body["pagination"] == {"page": 1, "limit": 20, "totalItems": 3, "totalPages": 1}
    assert body["items"][1] == {
        "id": "calculate-order-total",
        "name": "Calculate Order Total",
        "description": "Calculates the total price of an order including taxes",
        "type": "AUTOMATED",
        "version": "1.2.0",
        "revision": 1,
    }
    assert [d["id"] for d in client.get(f"{DEFINITIONS}?type=INTEGRATION").json()["items"]] == [
        "process-payment"
    ]
    by_name = client.get(f"{DEFINITIONS}?search=ORDER%20total").json()["items"]
    assert [d["id"] for d in by_name] == ["calculate-order-total"]
    by_description = client.get(f"{DEFINITIONS}?search=GATEWAY").json()["items"]
    assert [d["id"] for d in by_description] == ["process-payment"]
    assert client.get(f"{DEFINITIONS}?search=%25").json()["items"] == []  # % is literal
    paged = client.get(f"{DEFINITIONS}?limit=1&page=3").json()
    assert [d["id"] for d in paged["items"]] == ["process-payment"]
    assert paged["pagination"]["totalPages"] == 3
    manual = client.get(f"{DEFINITIONS}?type=MANUAL").json()["items"]
    assert [d["id"] for d in manual] == ["approve-refund"]

    detail = client.get(f"{DEFINITIONS}/calculate-order-total").json()
    assert detail["inputSchema"]["required"] == ["orderId", "items"]
    assert detail["outputSchema"]["required"] == ["subtotal", "tax", "total"]
    assert detail["timeout"] == 60000
    assert detail["retryPolicy"] == {
        "maxRetries": 3,
        "retryInterval": 60000,
        "backoffMultiplier": 2.0,
    }
    assert detail["executionConfig"]["executor"] == "standard-executor"
    assert detail["createdAt"].endswith("Z")
    assert detail["updatedAt"].endswith("Z")


@pytest.mark.parametrize("page", [4, 461168601842738792, 2**70])
def test_a_definitions_page_past_the_end_is_empty(client: TestClient[Any], page: int) -> None:
    """Past the last page, however far (SQLite binds at most 64-bit integers): an empty
    page with the true totals, as the task list answers, never a 500."""
    for path in (DEFINITIONS, TASKS):
        response = client.get(f"{path}?page={page}")  # 20 a page: offsets past 2**63
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["items"] == []
        assert body["pagination"]["page"] == page
        assert body["pagination"]["totalItems"] == (3 if path == DEFINITIONS else 0)


def test_a_nul_in_a_filter_or_an_id_is_never_a_500(client: TestClient[Any]) -> None:
    """PostgreSQL cannot compare text with U+0000 (schemathesis found the 500s): a filter
    matches as the read model keeps free text (a NUL as U+FFFD), an id names nothing."""
    submitted = client.post(
        TASKS,
        json={
            "taskDefinitionId": "calculate-order-total",
            "workflowInstanceId": "order\x00789",
            "input": EXAMPLE_INPUT,
        },
    )
    assert submitted.status_code == 201, submitted.text
    found = client.get(TASKS, params={"workflowInstanceId": "order\x00789"})
    assert found.status_code == 200, found.text
    assert [item["id"] for item in found.json()["items"]] == [submitted.json()["id"]]
    searched = client.get(DEFINITIONS, params={"search": "order\x00total"})
    assert searched.status_code == 200, searched.text
    assert searched.json()["items"] == []
    for path in (f"{DEFINITIONS}/calculate%00order", f"{TASKS}/%00"):
        assert client.get(path).status_code == 404, path


def test_unknown_definition_is_404_and_definitions_is_no_task_id(client: TestClient[Any]) -> None:
    response = client.get(f"{DEFINITIONS}/nope")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"
    assert client.get(DEFINITIONS).status_code == 200
    assert client.get(f"{DEFINITIONS}?type=BAD").status_code == 400
    assert client.get(f"{DEFINITIONS}?type=null").status_code == 400


def test_changed_definition_files_record_a_new_revision(database_url: str, tmp_path: Path) -> None:
    extra = tmp_path / "definitions"
    extra.mkdir()
    doc = {
        "id": "greet",
        "name": "Greet",
        "description": "Says hello",
        "type": "AUTOMATED",
        "version": "1.0.0",
        "executionConfig": {"handler": "m:f"},
    }
    (extra / "greet.json").write_text(json.dumps(doc))
    settings = Settings(database_url=database_url, var_dir=tmp_path, definitions_dir=extra)

    def start() -> Runtime:
        runtime = Runtime.open(settings)
        return runtime

    first = start()
    task = first.submit(SubmitTask(definition_id="greet", input={}, actor=ANONYMOUS))
    head = first.service.recorder.max_notification_id()
    first.close()

    unchanged = start()  # the same files: nothing recorded
    assert unchanged.service.recorder.max_notification_id() == head
    unchanged.close()

    (extra / "greet.json").write_text(json.dumps({**doc, "version": "1.1.0", "name": "Greet!"}))
    changed = start()
    try:
        changed.runner.wait_for(changed.service.recorder.max_notification_id() or 0, 5)
        definition = changed.get_definition("greet")
        assert definition is not None
        assert (definition["version"], definition["revision"], definition["name"]) == (
            "1.1.0",
            2,
            "Greet!",
        )
        # The task keeps the definition version it was submitted against.
        row = changed.get_task(task.task_id)
        assert row is not None
        assert (row["definition_version"], row["definition_revision"]) == ("1.0.0", 1)
        later = changed.submit(SubmitTask(definition_id="greet", input={}, actor=ANONYMOUS))
        row = changed.get_task(later.task_id)
        assert row is not None
        assert (row["definition_version"], row["definition_revision"]) == ("1.1.0", 2)
    finally:
        changed.close()


def test_rebuild_gives_exactly_the_live_rows_and_switches(
    client: TestClient[Any], runtime: Runtime
) -> None:
    seed(runtime)
    before_tasks = dump(runtime, "task_view", 1)
    before_counts = dump(runtime, "task_counts", 1)
    before_definitions = dump(runtime, "definition_view", 1)
    listed = client.get(f"{TASKS}?limit=100").json()
    seen: list[tuple[int, int]] = []

    rebuilder = Rebuilder(
        runtime.service.read_log,
        lambda: runtime.service.recorder.max_notification_id() or 0,
        read_models(),
        runtime.runner._db,  # the same read-model database
        batch_size=10,
    )
    result = rebuilder.rebuild(
        progress=lambda done, total: seen.append((done, total)), drop_after=0.2
    )

    assert (result.old_generation, result.new_generation) == (1, 2)
    # The old tables go after the grace period, which the build's time leaves out.
    assert result.cleanup_seconds >= 0.2
    with pytest.raises(Exception, match="task_view_g1"):
        dump(runtime, "task_view", 1)
    assert dump(runtime, "task_view", 2) == before_tasks
    assert dump(runtime, "task_counts", 2) == before_counts
    assert dump(runtime, "definition_view", 2) == before_definitions
    assert seen[-1][0] == result.events == len(runtime.service.read_log(0, 10_000))
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    # The API now reads the new generation (after its short cache) and the runner follows.
    assert client.get(f"{TASKS}?limit=100").json() == listed
    outcome = runtime.submit(
        SubmitTask(definition_id="calculate-order-total", input=EXAMPLE_INPUT, actor=ANONYMOUS)
    )
    assert client.get(f"{TASKS}/{outcome.task_id}").status_code == 200
    assert runtime.runner.error is None


def dump(runtime: Runtime, table: str, generation: int) -> list[dict[str, Any]]:
    with runtime.runner._db.read() as cur:
        rows = cur.execute(f"SELECT * FROM {table}_g{generation}").fetchall()
    return sorted(rows, key=lambda r: json.dumps(r, sort_keys=True, default=str))
