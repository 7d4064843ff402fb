"""Worker faults with real processes: a worker killed with SIGKILL mid-task has its attempt
redelivered to another worker and the task still finishes; SIGTERM lets a running task
finish before the worker exits. The service runs in this test's process (its real
projection, relay and results consumer); the workers are real ``taskexec worker`` processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from litestar.testing import TestClient

from api.http.app import create_app
from api.runtime import Runtime
from api.settings import Settings
from commands.messages import SubmitTask
from domain.task import Task
from domain.values import ANONYMOUS
from workers.nats_server import EmbeddedNatsServer

ROOT = Path(__file__).parents[2]
ACK_WAIT_S = 2.0  # short, so that a dead worker's attempt is redelivered quickly

HANDLERS = textwrap.dedent(
    """
    import time

    def slow(payload, context):
        time.sleep(payload["seconds"])
        return {"slept": payload["seconds"], "worker": context.worker}
    """
)


@pytest.fixture
def service(database_url: str, nats_server: EmbeddedNatsServer, tmp_path: Path) -> Iterator[Any]:
    code = tmp_path / "code"
    code.mkdir()
    (code / "fault_handlers.py").write_text(HANDLERS)
    definitions = tmp_path / "definitions"
    definitions.mkdir()
    doc = {
        "id": "slow",
        "name": "Slow",
        "type": "AUTOMATED",
        "version": "1",
        "timeout": 60_000,
        "executionConfig": {"handler": "fault_handlers:slow"},
    }
    (definitions / "slow.json").write_text(json.dumps(doc))
    settings = Settings(
        database_url=database_url,
        definitions_dir=definitions,
        var_dir=tmp_path,
        rate_limit="off",
        rate_limit_bulk="off",
        work_ack_wait_s=ACK_WAIT_S,
    )
    runtime = Runtime.open(settings)
    env = {
        **os.environ,
        "TASKEXEC_NATS_URL": nats_server.url,
        "TASKEXEC_WORK_ACK_WAIT_SECONDS": str(ACK_WAIT_S),
        "PYTHONPATH": os.pathsep.join([str(code), str(ROOT)]),
    }
    with TestClient(create_app(runtime, nats_server.url)):  # runs the lifespan
        yield runtime, env, tmp_path


def start_worker(env: dict[str, str], name: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "api.cli", "worker", "--id", name, "--concurrency", "1"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def until(runtime: Runtime, task_id: UUID, statuses: set[str], timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        row = runtime.get_task(task_id)
        if row and row["status"] in statuses:
            return row
        assert time.monotonic() < deadline, f"{task_id} never reached {statuses}: {row}"
        time.sleep(0.05)


def test_a_killed_worker_s_attempt_is_redelivered_and_finishes(service: Any) -> None:
    runtime, env, tmp = service
    log = tmp / "workers.log"
    first = start_worker(env, "doomed", log)
    try:
        task_id = runtime.submit(
            SubmitTask(definition_id="slow", input={"seconds": 2}, actor=ANONYMOUS)
        ).task_id
        running = until(runtime, task_id, {"RUNNING"}, timeout=30)
        assert running["execution_environment"] == "doomed"
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        second = start_worker(env, "rescuer", log)
        try:
            done = until(runtime, task_id, {"COMPLETED", "FAILED"}, timeout=60)
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(40)
    finally:
        if first.poll() is None:
            first.kill()
    assert done["status"] == "COMPLETED", (tmp / "workers.log").read_text()
    assert done["output"] == {"slept": 2, "worker": "rescuer"}
    assert done["attempts"] == 1  # the same attempt, run again: at least once
    starts = [
        e.worker
        for _, e in runtime.service.read_log(0, 10_000)
        if isinstance(e, Task.Started) and e.originator_id == task_id
    ]
    assert starts == ["doomed", "rescuer"]


def test_sigterm_lets_the_running_task_finish(service: Any) -> None:
    runtime, env, tmp = service
    worker = start_worker(env, "polite", tmp / "workers.log")
    try:
        task_id = runtime.submit(
            SubmitTask(definition_id="slow", input={"seconds": 1.5}, actor=ANONYMOUS)
        ).task_id
        until(runtime, task_id, {"RUNNING"}, timeout=30)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
    done = until(runtime, task_id, {"COMPLETED", "FAILED"}, timeout=10)
    assert done["status"] == "COMPLETED"
    assert done["execution_environment"] == "polite"
