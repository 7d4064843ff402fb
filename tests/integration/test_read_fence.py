"""A submit is answered once durable, before its row is projected; reads catch up.

On PostgreSQL the projection is held back for real: another connection holds the
read-model write lock every projection batch takes (projections/runner.py), so the
runner cannot write while the submit is answered and the reads are made.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import psycopg

from api.settings import Settings
from projections.runner import write_lock
from tests.security_support import api_client, new_key

TASKS = "/api/v1/tasks"
ORDER = {
    "taskDefinitionId": "calculate-order-total",
    "input": {"orderId": "A", "items": [{"id": "I-1", "quantity": 1, "price": 2.5}]},
}


class HeldProjection:
    """Holds the read models' write lock until ``release``."""

    def __init__(self, runtime: Any) -> None:
        self._conn = psycopg.connect(runtime.db_config.conninfo())
        self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (write_lock(runtime.db_config),))

    def release(self) -> None:
        self._conn.rollback()
        self._conn.close()


def test_submit_is_answered_while_the_projection_is_held_and_reads_wait_for_it(
    postgres_url: str, tmp_path: Path
) -> None:
    settings = Settings(database_url=postgres_url, var_dir=tmp_path, rate_limit="off")
    with api_client(settings) as (client, runtime), ThreadPoolExecutor(2) as pool:
        client.headers["X-API-Key"] = new_key(runtime)
        held = HeldProjection(runtime)
        try:
            response = client.post(TASKS, json=ORDER)  # would block if it waited for its row
            assert response.status_code == 201, response.text
            task_id = UUID(response.json()["id"])
            assert runtime.queries.get(str(task_id)) is None  # not projected yet
            got: Future[Any] = pool.submit(runtime.get_task, task_id)
            listed: Future[Any] = pool.submit(runtime.list_tasks, page=1, limit=20)
            threading.Event().wait(0.3)
            assert not got.done() and not listed.done()  # both wait for the projection
        finally:
            held.release()
        row = got.result(timeout=10)
        assert row is not None and row["id"] == str(task_id)
        assert [item["id"] for item in listed.result(timeout=10).items] == [str(task_id)]
        body = client.get(f"{TASKS}/{task_id}").json()
        assert (body["id"], body["status"]) == (str(task_id), "PENDING")


def test_an_unknown_task_is_a_404_without_waiting_for_a_timeout(
    database_url: str, tmp_path: Path
) -> None:
    """A miss made with the read model at the log's head stands at once (no 5 s wait)."""
    settings = Settings(database_url=database_url, var_dir=tmp_path, rate_limit="off")
    with api_client(settings) as (client, runtime):
        client.headers["X-API-Key"] = new_key(runtime)
        assert client.post(TASKS, json=ORDER).status_code == 201
        runtime.fence.wait_for(runtime.service.recorder.max_notification_id() or 0)
        head = runtime.fence.projected
        assert runtime.fence.after_miss(head) is False
        assert client.get(f"{TASKS}/{uuid4()}").status_code == 404
