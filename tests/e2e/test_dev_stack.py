"""End to end: the real ``taskexec dev`` processes, driven over HTTP and read over NATS.

The spec's example goes PENDING -> RUNNING -> COMPLETED with the exact output; a raising
handler gives FAILED with its error; stopping ``dev`` leaves no process behind. On
SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest

from tests.conftest import EXAMPLE_INPUT, EXAMPLE_OUTPUT, free_port

ROOT = Path(__file__).parents[2]
HANDLERS = textwrap.dedent(
    """
    import time

    class InventoryError(Exception):
        pass

    def reserve(payload, context):
        raise InventoryError(f"only {payload['have']} left")

    def slow(payload, context):
        time.sleep(payload["seconds"])
        return {"done": True}
    """
)
DEFINITIONS = [
    {
        "id": "reserve-stock",
        "name": "Reserve stock",
        "type": "AUTOMATED",
        "version": "1.0.0",
        "executionConfig": {"handler": "e2e_handlers:reserve"},
    },
    {
        "id": "slow-step",
        "name": "Slow step",
        "type": "AUTOMATED",
        "version": "1.0.0",
        "executionConfig": {"handler": "e2e_handlers:slow"},
    },
    {
        "id": "pooled-step",
        "name": "Pooled step",
        "type": "AUTOMATED",
        "version": "1.0.0",
        "executionConfig": {"handler": "e2e_handlers:slow", "executor": "e2e-pool"},
    },
]


@dataclass
class Stack:
    base: str
    process: subprocess.Popen[bytes]
    var_dir: Path
    log: Path

    @property
    def nats_url(self) -> str:
        return (self.var_dir / "nats" / "url").read_text().strip()

    @property
    def auth(self) -> dict[str, str]:
        """The development API key that ``taskexec dev`` made (every permission)."""
        return {"X-API-Key": (self.var_dir / "dev-api-key").read_text().strip()}


@pytest.fixture
def dev_stack(database_url: str, tmp_path: Path) -> Iterator[Stack]:
    code = tmp_path / "code"
    code.mkdir()
    (code / "e2e_handlers.py").write_text(HANDLERS)
    definitions = tmp_path / "definitions"
    definitions.mkdir()
    (definitions / "reserve.json").write_text(json.dumps(DEFINITIONS[0]))
    (definitions / "slow.yaml").write_text(json.dumps(DEFINITIONS[1]))  # JSON is valid YAML
    (definitions / "pooled.json").write_text(json.dumps(DEFINITIONS[2]))
    port = free_port()
    var_dir = tmp_path / "var"
    env = {
        **os.environ,
        "TASKEXEC_DATABASE_URL": database_url,
        "TASKEXEC_VAR_DIR": str(var_dir),
        "TASKEXEC_DEFINITIONS_DIR": str(definitions),
        "PYTHONPATH": os.pathsep.join([str(code), str(ROOT)]),
        "TASKEXEC_RATE_LIMIT": "10000/minute",  # these tests poll every 20 ms
    }
    env.pop("TASKEXEC_NATS_URL", None)
    log = tmp_path / "dev.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "dev", "--port", str(port)],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    stack = Stack(f"http://127.0.0.1:{port}", process, var_dir, log)
    try:
        _wait_healthy(stack)
        yield stack
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(40)
            except subprocess.TimeoutExpired:
                process.kill()


def _wait_healthy(stack: Stack, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stack.process.poll() is not None:
            raise AssertionError(f"dev exited early:\n{stack.log.read_text()}")
        try:
            if httpx.get(f"{stack.base}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"dev did not become healthy:\n{stack.log.read_text()}")


def _until(stack: Stack, task_id: str, statuses: set[str], timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = httpx.get(
            f"{stack.base}/api/v1/tasks/{task_id}", headers=stack.auth
        ).json()
        if body.get("status") in statuses:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"{task_id} never reached {statuses}: {body}")
        time.sleep(0.02)


async def _lifecycle(nats_url: str, task_id: str, count: int) -> list[dict[str, Any]]:
    """The task's CloudEvents from TASK_EVENTS, in stream order."""
    nc = await nats.connect(nats_url)
    try:
        sub = await nc.jetstream().subscribe("tasks.events.>", ordered_consumer=True)
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + 20
        while len(seen) < count and time.monotonic() < deadline:
            try:
                msg = await sub.next_msg(timeout=1)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            event = json.loads(msg.data)
            if event["subject"] == task_id:
                seen.append(event)
        return seen
    finally:
        await nc.close()


def test_the_spec_example_runs_over_http_and_nats(dev_stack: Stack) -> None:
    created = httpx.post(
        f"{dev_stack.base}/api/v1/tasks",
        json={
            "taskDefinitionId": "calculate-order-total",
            "workflowInstanceId": "order-workflow-789",
            "input": EXAMPLE_INPUT,
        },
        headers=dev_stack.auth,
    )
    assert created.status_code == 201, created.text
    task_id = created.json()["id"]
    assert created.json()["status"] == "PENDING"

    done = _until(dev_stack, task_id, {"COMPLETED", "FAILED"})
    assert done["status"] == "COMPLETED", done
    assert done["output"] == EXAMPLE_OUTPUT
    metadata = done["executionMetadata"]
    assert metadata["executionEnvironment"]
    assert metadata["duration"] is not None and metadata["duration"] >= 0
    assert metadata["startTime"] <= metadata["endTime"]

    events = asyncio.run(_lifecycle(dev_stack.nats_url, task_id, 3))
    assert [e["type"] for e in events] == [
        "io.taskexec.task.submitted.v1",
        "io.taskexec.task.started.v1",
        "io.taskexec.task.completed.v1",
    ]
    assert [e["data"]["status"] for e in events] == ["PENDING", "RUNNING", "COMPLETED"]
    assert events[2]["data"]["output"] == EXAMPLE_OUTPUT


def test_running_is_visible_and_a_raising_handler_fails(dev_stack: Stack) -> None:
    slow = httpx.post(
        f"{dev_stack.base}/api/v1/tasks",
        json={"taskDefinitionId": "slow-step", "input": {"seconds": 1.5}},
        headers=dev_stack.auth,
    ).json()["id"]
    running = _until(dev_stack, slow, {"RUNNING", "COMPLETED"})
    assert running["status"] == "RUNNING"
    assert running["executionMetadata"]["startTime"] is not None
    assert running["executionMetadata"]["endTime"] is None

    failing = httpx.post(
        f"{dev_stack.base}/api/v1/tasks",
        json={"taskDefinitionId": "reserve-stock", "input": {"have": 2}},
        headers=dev_stack.auth,
    ).json()["id"]
    failed = _until(dev_stack, failing, {"FAILED", "COMPLETED"})
    assert failed["status"] == "FAILED"
    error = failed["error"]
    assert (error["type"], error["message"]) == ("InventoryError", "only 2 left")
    assert "InventoryError: only 2 left" in error["details"]["traceback"]  # the handler's
    assert _until(dev_stack, slow, {"COMPLETED"})["output"] == {"done": True}


def test_devs_worker_takes_every_pool_its_definitions_name(dev_stack: Stack) -> None:
    """``pooled-step`` is in ``e2e-pool``, the built-in ``process-payment`` in
    ``integration-executor``: ``dev``'s worker runs both (its endpoint refuses: FAILED)."""
    tasks = f"{dev_stack.base}/api/v1/tasks"
    pooled = {"taskDefinitionId": "pooled-step", "input": {"seconds": 0}}
    payment = {
        "taskDefinitionId": "process-payment",
        "input": {"orderId": "O-1", "amount": 5, "currency": "EUR"},
        "executionConfig": {"retryPolicy": {"maxRetries": 0}},
    }
    ids = [
        httpx.post(tasks, json=body, headers=dev_stack.auth).json()["id"]
        for body in (pooled, payment)
    ]
    assert _until(dev_stack, ids[0], {"COMPLETED", "FAILED"})["status"] == "COMPLETED"
    failed = _until(dev_stack, ids[1], {"COMPLETED", "FAILED"})
    assert (failed["status"], failed["error"]["type"]) == ("FAILED", "CONNECTION_ERROR")
    banner = dev_stack.log.read_text()
    assert "executor pools standard-executor, " in banner
    assert "e2e-pool" in banner and "integration-executor" in banner


def test_stopping_dev_leaves_no_process_behind(dev_stack: Stack) -> None:
    children = _children(dev_stack.process.pid)
    assert len(children) >= 2, children  # the nats-server and the worker
    dev_stack.process.send_signal(signal.SIGTERM)
    assert dev_stack.process.wait(40) == 0
    time.sleep(0.5)
    assert [pid for pid in children if _alive(pid)] == []


def test_killing_dev_leaves_no_orphan(dev_stack: Stack) -> None:
    children = _children(dev_stack.process.pid)
    assert len(children) >= 2, children
    dev_stack.process.send_signal(signal.SIGKILL)
    dev_stack.process.wait(10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and [pid for pid in children if _alive(pid)]:
        time.sleep(0.1)
    assert [pid for pid in children if _alive(pid)] == []


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(line) for line in out.stdout.split()]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"
