"""Work that takes down every worker that starts it (killed in an attempt's first
moments, before any report) must not be delivered forever, nor waited for forever: after
its deliveries run out it is published again while the attempt never started, and then
its task ends FAILED (``UNDELIVERABLE``). Real processes; workers are restarted as a
supervisor would."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import httpx
import pytest

from commands.catalog import DefinitionCatalog
from commands.persistence import DatabaseConfig
from commands.service import TaskService
from domain.task import UNDELIVERABLE
from domain.values import TaskStatus
from tests.faults.stack import Stack
from workers.bridge.lost_work import REPUBLISH_LIMIT
from workers.nats_server import EmbeddedNatsServer
from workers.streams import WORK_MAX_DELIVER

ACK_WAIT_S = 1.0  # a killed worker's work comes back after this long
WITHIN_S = 150.0


@pytest.fixture
def stack(postgres_url: str, nats_server: EmbeddedNatsServer, tmp_path: Path) -> Iterator[Stack]:
    env = {"TASKEXEC_WORK_ACK_WAIT_SECONDS": str(ACK_WAIT_S)}
    running = Stack(postgres_url, nats_server.url, tmp_path, env=env)
    yield running
    running.stop_all()


def status(database_url: str, task_id: str) -> tuple[TaskStatus, list[str], dict[str, str] | None]:
    config = DatabaseConfig.from_url(database_url)
    service = TaskService(config.eventsourcing_env(pool_size=1), DefinitionCatalog([]))
    try:
        task = service.load(UUID(task_id))
        events = [type(event).__name__ for event in service.events.get(UUID(task_id))]
        return task.status, events, task.error
    finally:
        service.close()


def test_work_that_kills_every_worker_ends_its_task_failed(stack: Stack) -> None:
    base = stack.serve("serve")
    created = httpx.post(
        f"{base}/api/v1/tasks",
        json={"taskDefinitionId": "crash", "input": {}},
        headers={"X-API-Key": stack.key},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    task_id = created.json()["id"]

    def finished() -> bool:
        url = f"{base}/api/v1/tasks/{task_id}"
        body = httpx.get(url, headers={"X-API-Key": stack.key}, timeout=10).json()
        return body["status"] not in ("PENDING", "RUNNING")

    deaths = 0
    deadline = time.monotonic() + WITHIN_S
    while time.monotonic() < deadline:
        stack.worker("w")  # the supervisor restarts it
        while stack.processes["w"].poll() is None and time.monotonic() < deadline:
            if finished():
                break
            time.sleep(0.2)
        if stack.processes["w"].poll() is None:
            break  # alive: the task has ended
        deaths += 1

    final, events, error = status(stack.database_url, task_id)
    print(f"\nworkers killed: {deaths}; history: {events}")
    assert final is TaskStatus.FAILED, stack.logs()
    assert error is not None and error["type"] == UNDELIVERABLE
    assert events == ["Submitted", "Failed"]  # never started: no report ever came
    assert deaths == WORK_MAX_DELIVER * (REPUBLISH_LIMIT + 1)
    stack.cli("verify")  # exit 0 (asserted in cli): nothing inconsistent, nothing stranded
