"""``GET /metrics`` and the probes on the real app (SQLite and PostgreSQL, a real
nats-server, no worker: submitted work waits in JetStream, where the backlog shows it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from api.http.app import create_app
from api.runtime import Runtime
from api.settings import Settings
from tests.conftest import EXAMPLE_INPUT
from tests.metrics_support import Samples, eventually, label_values, names, samples, value
from tests.security_support import assert_envelope, new_key
from workers.nats_server import EmbeddedNatsServer

TASKS = "/api/v1/tasks"
SCRAPED_NOW = {  # read at each scrape (api/metrics/scrape.py)
    "taskexec_tasks",
    "taskexec_projection_lag_events",
    "taskexec_relay_lag_events",
    "taskexec_work_pending",
    "taskexec_work_unacked",
    "taskexec_work_oldest_pending_seconds",
    "taskexec_results_lag_messages",
}


@pytest.fixture
def runtime(database_url: str, tmp_path: Path) -> Iterator[Runtime]:
    settings = Settings(database_url=database_url, var_dir=tmp_path, rate_limit="off")
    runtime = Runtime.open(settings)
    yield runtime
    runtime.close()


@pytest.fixture
def client(runtime: Runtime, nats_server: EmbeddedNatsServer) -> Iterator[TestClient[Any]]:
    with TestClient(create_app(runtime, nats_server.url)) as test_client:
        test_client.headers["X-API-Key"] = new_key(runtime, "tasks:execute", "tasks:read")
        yield test_client


def scrape(client: TestClient[Any], key: str) -> Samples:
    response = client.get("/metrics", headers={"X-API-Key": key})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return samples(response.text)


def test_metrics_need_a_key_with_metrics_read(client: TestClient[Any], runtime: Runtime) -> None:
    assert_envelope(client.get("/metrics", headers={"X-API-Key": ""}), 401, "UNAUTHORIZED")
    assert_envelope(client.get("/metrics"), 403, "FORBIDDEN")  # tasks:execute, tasks:read
    found = scrape(client, new_key(runtime, "metrics:read"))
    assert names(found) >= SCRAPED_NOW
    assert "/metrics" not in client.get("/schema/openapi.json").json()["paths"]


def test_values_move_as_tasks_are_submitted(client: TestClient[Any], runtime: Runtime) -> None:
    key = new_key(runtime, "metrics:read")
    before = scrape(client, key)
    body = {"taskDefinitionId": "calculate-order-total", "input": EXAMPLE_INPUT}
    ids = []
    for priority in ("HIGH", "HIGH", "LOW"):
        created = client.post(TASKS, json={**body, "priority": priority})
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])
    assert client.get(f"{TASKS}/{ids[0]}").status_code == 200
    assert client.get(f"{TASKS}/not-a-task/at/all").status_code == 404

    def moved() -> Samples:
        found = scrape(client, key)
        pending = {
            p: value(found, "taskexec_work_pending", pool="standard-executor", priority=p)
            for p in ("HIGH", "LOW")
        }
        assert pending == {"HIGH": 2, "LOW": 1}  # no worker: the work waits in JetStream
        assert value(found, "taskexec_relay_lag_events") == 0
        return found

    after = eventually(moved)
    submitted = "taskexec_tasks_submitted_total"
    assert (
        value(after, submitted, definition="calculate-order-total")
        - value(before, submitted, definition="calculate-order-total")
        == 3
    )
    pending = value(after, "taskexec_tasks", status="PENDING")
    listed = client.get(
        TASKS, params={"status": "PENDING"}, headers={"X-API-Key": new_key(runtime)}
    )
    assert pending == listed.json()["pagination"]["totalItems"] == 3
    assert (
        value(
            after, "taskexec_work_oldest_pending_seconds", pool="standard-executor", priority="HIGH"
        )
        > 0
    )
    assert value(after, "taskexec_work_oldest_pending_seconds", priority="CRITICAL") == 0
    assert value(after, "taskexec_projection_lag_events") == 0
    assert value(after, "taskexec_results_lag_messages") == 0

    requests = "taskexec_http_requests_total"
    post = {"method": "POST", "route": TASKS, "status": "201"}
    assert value(after, requests, **post) - value(before, requests, **post) == 3
    got = {"method": "GET", "route": f"{TASKS}/{{taskId}}", "status": "200"}
    assert value(after, requests, **got) == 1
    assert value(after, requests, method="GET", route="unmatched", status="404") == 1
    assert value(after, requests, method="GET", route="/metrics", status="403") == 0
    routes = label_values(after, requests, "route")
    assert not any(task_id in route for route in routes for task_id in ids)  # templates only
    durations = "taskexec_http_request_duration_seconds_count"
    assert value(after, durations, method="POST", route=TASKS) >= 3


def test_probes(client: TestClient[Any]) -> None:
    without_key = {"X-API-Key": ""}
    assert client.get("/health/live", headers=without_key).json() == {"status": "ok"}
    ready = client.get("/health/ready", headers=without_key)
    assert ready.status_code == 200
    assert ready.json() == client.get("/health").json()
    assert ready.json()["checks"] == {"database": True, "projection": True, "nats": True}


def test_ready_is_503_and_live_200_without_nats(runtime: Runtime) -> None:
    with TestClient(create_app(runtime, None)) as client:
        assert client.get("/health/live").status_code == 200
        ready = client.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["checks"]["nats"] is False
        # No JetStream: its families are left out, the store's are served.
        found = scrape(client, new_key(runtime, "metrics:read"))
        assert "taskexec_work_pending" not in names(found)
        assert "taskexec_tasks" in names(found)
