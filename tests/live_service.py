"""A live ``taskexec dev`` for the contract checks, with real data and two API keys.

The contract checks (tests/integration/test_openapi_contract.py, test_generated_client.py)
judge the OpenAPI document the service serves against what the running service answers,
so they need the real thing over real HTTP: ``taskexec dev`` (embedded nats-server, API,
projections, one worker) on a free port, on SQLite or on a fresh PostgreSQL schema.

Before it starts, a read-only key is made with ``taskexec apikey create``; ``dev`` makes
its own key with every permission. The rate limits are raised so that no check is
throttled (429 stays declared in the document all the same). Once it is healthy, tasks
of every built-in definition are submitted and driven to several states (COMPLETED,
PENDING, CANCELLED, MANUAL completed and failed), so that reads by id meet real tasks.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from commands.persistence import DatabaseConfig
from tests.conftest import EXAMPLE_INPUT, free_port

ROOT = Path(__file__).parents[1]
TASKS = "/api/v1/tasks"
READ_ONLY_PERMISSIONS = (
    "tasks:read",
    "tasks:list",
    "tasks:audit",
    "tasks:definitions:read",
    "tasks:definitions:list",
)
BUILT_IN_DEFINITIONS = ("calculate-order-total", "approve-refund", "process-payment")
UNTHROTTLED = "1000000/minute"


@dataclass(frozen=True)
class LiveService:
    """A running ``taskexec dev``: its address, its two keys and the tasks it was given."""

    base: str
    full_key: str  # every permission (the key ``taskexec dev`` made)
    read_key: str  # READ_ONLY_PERMISSIONS
    log: Path
    tasks: dict[str, str] = field(default_factory=dict)  # role -> task id

    @property
    def schema_url(self) -> str:
        return f"{self.base}/schema/openapi.json"

    @property
    def task_ids(self) -> list[str]:
        return sorted(set(self.tasks.values()))

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@contextlib.contextmanager
def database_for(backend: str, request: pytest.FixtureRequest, workdir: Path) -> Iterator[str]:
    """A database URL for one module's service: a SQLite file, or a fresh PostgreSQL
    schema (dropped afterwards; fails, never skips, when PostgreSQL is unreachable)."""
    if backend == "sqlite":
        yield f"sqlite:///{workdir / 'taskexec.db'}"
        return
    base: str = request.getfixturevalue("postgres_base_url")
    schema = f"c_{uuid.uuid4().hex[:16]}"
    separator = "&" if "?" in base else "?"
    try:
        yield f"{base}{separator}schema={schema}"
    finally:
        conninfo = DatabaseConfig.from_url(base).conninfo()
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@contextlib.contextmanager
def live_service(database_url: str, workdir: Path) -> Iterator[LiveService]:
    """``taskexec dev`` on a free port over ``database_url``, seeded; stopped afterwards."""
    var_dir = workdir / "var"
    env = {
        **os.environ,
        "TASKEXEC_DATABASE_URL": database_url,
        "TASKEXEC_VAR_DIR": str(var_dir),
        "PYTHONPATH": str(ROOT),
        "TASKEXEC_RATE_LIMIT": UNTHROTTLED,
        "TASKEXEC_RATE_LIMIT_BULK": UNTHROTTLED,
        "TASKEXEC_LOG_LEVEL": "WARNING",
    }
    for name in ("TASKEXEC_NATS_URL", "TASKEXEC_DEFINITIONS_DIR"):
        env.pop(name, None)  # the embedded nats-server; the built-in definitions
    permissions = ["--permissions", ",".join(READ_ONLY_PERMISSIONS)]
    created = subprocess.run(
        [sys.executable, "-m", "api.cli", "apikey", "create", "--name", "read-only", *permissions],
        env=env,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert created.returncode == 0, created.stderr
    read_key = created.stdout.strip()

    port = free_port()
    log = workdir / "dev.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "dev", "--port", str(port)],
            env=env,
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(base, process, log)
        full_key = (var_dir / "dev-api-key").read_text().strip()
        service = LiveService(base=base, full_key=full_key, read_key=read_key, log=log)
        with httpx.Client(base_url=base, headers={"X-API-Key": full_key}, timeout=10) as client:
            service.tasks.update(_seed(client))
        yield service
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(40)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def _wait_healthy(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    with httpx.Client(timeout=1) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"taskexec dev exited early:\n{log.read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get(f"{base}/health").status_code == 200:
                    return
            time.sleep(0.1)
    raise AssertionError(f"taskexec dev did not become healthy:\n{log.read_text()}")


def _submit(client: httpx.Client, body: dict[str, Any]) -> str:
    response = client.post(TASKS, json=body)
    assert response.status_code == 201, response.text
    task_id: str = response.json()["id"]
    return task_id


def _seed(client: httpx.Client) -> dict[str, str]:
    """Tasks of every built-in definition, in several states; their ids by role."""
    refund = {"taskDefinitionId": "approve-refund", "input": {"orderId": "ORD-1", "amount": 5}}
    tasks = {
        "completed": _submit(
            client, {"taskDefinitionId": "calculate-order-total", "input": EXAMPLE_INPUT}
        ),
        "completed_in_workflow": _submit(
            client,
            {
                "taskDefinitionId": "calculate-order-total",
                "workflowInstanceId": "contract-workflow-1",
                "priority": "HIGH",
                "input": EXAMPLE_INPUT,
            },
        ),
        "manual_pending": _submit(client, refund),
        "manual_completed": _submit(client, refund),
        "manual_failed": _submit(client, refund),
        "cancelled": _submit(client, {**refund, "priority": "LOW"}),
        # INTEGRATION: its endpoint (port 9) refuses, so it retries and then fails.
        "integration": _submit(
            client,
            {
                "taskDefinitionId": "process-payment",
                "input": {"orderId": "ORD-2", "amount": 12.5, "currency": "EUR"},
            },
        ),
    }
    finished = [
        client.post(
            f"{TASKS}/{tasks['manual_completed']}/complete", json={"output": {"approved": True}}
        ),
        client.post(
            f"{TASKS}/{tasks['manual_failed']}/fail",
            json={"error": {"type": "Rejected", "message": "no receipt"}},
        ),
        client.post(f"{TASKS}/{tasks['cancelled']}/cancel", json={"reason": "contract seed"}),
    ]
    for response in finished:
        assert response.status_code == 200, response.text
    for role in ("completed", "completed_in_workflow"):
        _until_status(client, tasks[role], "COMPLETED")
    return tasks


def _until_status(client: httpx.Client, task_id: str, status: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(f"{TASKS}/{task_id}").json()
        if body.get("status") == status:
            return
        assert time.monotonic() < deadline, f"{task_id} never reached {status}: {body}"
        time.sleep(0.05)
