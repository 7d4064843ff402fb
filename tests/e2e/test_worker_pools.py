"""``taskexec worker`` processes and their executor pools, on SQLite and PostgreSQL: the
``--executors`` flag wins over TASKEXEC_WORKER_EXECUTORS; the variable alone is heeded;
a worker told nothing takes the default pool only. Real serve, workers and nats-server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.faults.stack import POOL_B, Stack
from workers.nats_server import EmbeddedNatsServer


@pytest.fixture
def stack(database_url: str, nats_server: EmbeddedNatsServer, tmp_path: Path) -> Iterator[Stack]:
    running = Stack(database_url, nats_server.url, tmp_path)
    yield running
    running.stop_all()


def submit(client: httpx.Client, base: str, definition: str) -> str:
    body = {"taskDefinitionId": definition, "input": {"seconds": 0}}
    answer = client.post(f"{base}/api/v1/tasks", json=body)
    assert answer.status_code == 201, answer.text
    task_id: str = answer.json()["id"]
    return task_id


def until(client: httpx.Client, base: str, task_id: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        body: dict[str, Any] = client.get(f"{base}/api/v1/tasks/{task_id}").json()
        if body["status"] == status:
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


def test_the_flag_wins_over_the_variable_which_wins_over_the_default(stack: Stack) -> None:
    base = stack.serve("serve")
    with httpx.Client(timeout=10, headers={"X-API-Key": stack.key}) as client:
        # Told pool-b by its flag, something else by the variable: it takes pool-b.
        stack.worker("flagged", executors=POOL_B, env={"TASKEXEC_WORKER_EXECUTORS": "elsewhere"})
        pooled = submit(client, base, "slow-b")
        plain = submit(client, base, "slow")  # the default pool: no worker of it yet
        ran = until(client, base, pooled, "COMPLETED")
        assert ran["executionMetadata"]["executionEnvironment"] == "flagged"
        assert client.get(f"{base}/api/v1/tasks/{plain}").json()["status"] == "PENDING"

        # Told by the variable only (the flagged worker gone): the default pool is not
        # among its pools.
        stack.processes["flagged"].terminate()
        assert stack.processes["flagged"].wait(30) == 0
        stack.worker("by-variable", env={"TASKEXEC_WORKER_EXECUTORS": f"elsewhere,{POOL_B}"})
        again = submit(client, base, "slow-b")
        ran = until(client, base, again, "COMPLETED")
        assert ran["executionMetadata"]["executionEnvironment"] == "by-variable"
        assert client.get(f"{base}/api/v1/tasks/{plain}").json()["status"] == "PENDING"

        stack.worker("default")  # told nothing: standard-executor
        ran = until(client, base, plain, "COMPLETED")
        assert ran["executionMetadata"]["executionEnvironment"] == "default"
    stack.stop_all()  # their logs written out
    for worker, pools in (
        ("flagged", "pool-b"),
        ("by-variable", "elsewhere, pool-b"),
        ("default", "standard-executor"),
    ):
        log = (stack.dir / f"{worker}.log").read_text()
        assert f"worker {worker} ready (concurrency 8, pools {pools}, any cpu" in log


def test_a_bad_pool_name_stops_the_worker_naming_the_flag(stack: Stack) -> None:
    stack.worker("bad", executors="Pool_B")
    assert stack.processes["bad"].wait(30) == 2
    assert "--executors 'Pool_B' is not a pool name" in (stack.dir / "bad.log").read_text()
