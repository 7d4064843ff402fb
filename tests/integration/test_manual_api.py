"""MANUAL tasks over HTTP: no worker runs them; POST …/complete or …/fail finishes them,
with the ``tasks:complete`` permission and output validated like any other."""

from __future__ import annotations

from pathlib import Path

from api.settings import Settings
from tests.security_support import api_client, assert_envelope, new_key
from workers.bridge.outbox import to_messages

TASKS = "/api/v1/tasks"
REFUND = {"taskDefinitionId": "approve-refund", "input": {"orderId": "A-1", "amount": 30}}


def test_a_manual_task_waits_and_is_completed_by_hand(database_url: str, tmp_path: Path) -> None:
    settings = Settings(database_url=database_url, var_dir=tmp_path, rate_limit="off")
    with api_client(settings) as (client, runtime):
        client.headers["X-API-Key"] = new_key(runtime)
        task_id = client.post(TASKS, json=REFUND).json()["id"]
        assert client.get(f"{TASKS}/{task_id}").json()["status"] == "PENDING"
        # No work item is ever published for it: nothing for a worker to pick up.
        submitted = runtime.service.read_log(0, 1000)[-1]
        assert [m.subject for m in to_messages(submitted[1], submitted[0])] == [
            "tasks.events.submitted"
        ]

        invalid = client.post(f"{TASKS}/{task_id}/complete", json={"output": {"approved": 1}})
        error = assert_envelope(invalid, 422, "VALIDATION_ERROR")
        assert error["details"]["violations"][0]["path"] == "$.approved"
        assert client.get(f"{TASKS}/{task_id}").json()["status"] == "PENDING"

        done = client.post(
            f"{TASKS}/{task_id}/complete", json={"output": {"approved": True, "note": "ok"}}
        )
        assert done.status_code == 200, done.text
        assert done.json()["status"] == "COMPLETED"
        body = client.get(f"{TASKS}/{task_id}").json()
        assert (body["status"], body["output"]) == ("COMPLETED", {"approved": True, "note": "ok"})
        again = client.post(f"{TASKS}/{task_id}/complete", json={"output": {"approved": True}})
        assert_envelope(again, 409, "CONFLICT")


def test_fail_by_hand_permissions_and_wrong_types(database_url: str, tmp_path: Path) -> None:
    settings = Settings(database_url=database_url, var_dir=tmp_path, rate_limit="off")
    with api_client(settings) as (client, runtime):
        client.headers["X-API-Key"] = new_key(runtime)
        task_id = client.post(TASKS, json=REFUND).json()["id"]
        reader = new_key(runtime, "tasks:read", "tasks:execute")
        refused = client.post(
            f"{TASKS}/{task_id}/fail",
            json={"error": {"type": "REJECTED", "message": "no"}},
            headers={"X-API-Key": reader},
        )
        assert_envelope(refused, 403, "FORBIDDEN")

        failed = client.post(
            f"{TASKS}/{task_id}/fail", json={"error": {"type": "REJECTED", "message": "no"}}
        )
        assert failed.json()["status"] == "FAILED"
        body = client.get(f"{TASKS}/{task_id}").json()
        assert body["error"] == {"type": "REJECTED", "message": "no", "details": None}

        automated = client.post(
            TASKS,
            json={
                "taskDefinitionId": "calculate-order-total",
                "input": {"orderId": "x", "items": [{"id": "a", "quantity": 1, "price": 1}]},
            },
        ).json()["id"]
        not_manual = client.post(f"{TASKS}/{automated}/complete", json={"output": {}})
        assert "MANUAL" in assert_envelope(not_manual, 409, "CONFLICT")["message"]
        assert_envelope(
            client.post(f"{TASKS}/{task_id}/complete", json={"nope": 1}), 400, "VALIDATION_ERROR"
        )
        missing = client.post(
            f"{TASKS}/00000000-0000-4000-8000-000000000000/complete", json={"output": {}}
        )
        assert_envelope(missing, 404, "NOT_FOUND")
