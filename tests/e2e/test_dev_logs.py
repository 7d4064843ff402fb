"""End to end: the logs of the real ``taskexec dev`` processes, and Ctrl-C.

- ``TASKEXEC_LOG_FORMAT=json``: every line ``serve`` and the worker write is one JSON
  object; the access lines carry the request id (sent back as ``X-Request-ID``) and the
  principal, never the key; what a handler logs names its task, attempt and worker; a
  raising handler's traceback is logged.
- Ctrl-C (SIGINT to the whole process group, as a terminal sends it) while a task runs:
  the task finishes (the worker's grace), every process stops, exit status 0, and nothing
  is written that looks like trouble (no traceback, no ERROR, no lost NATS connection).
On SQLite and on PostgreSQL.
"""

from __future__ import annotations

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
import pytest

from tests.conftest import EXAMPLE_INPUT, free_port

ROOT = Path(__file__).parents[2]
HANDLERS = textwrap.dedent(
    """
    import logging
    import time

    log = logging.getLogger("e2e_handlers")

    class InventoryError(Exception):
        pass

    def reserve(payload, context):
        log.info("reserving, %s left", payload["have"])
        raise InventoryError(f"only {payload['have']} left")

    def slow(payload, context):
        time.sleep(payload["seconds"])
        return {"done": True}
    """
)
DEFINITIONS = {
    "reserve.json": {
        "id": "reserve-stock",
        "name": "Reserve stock",
        "type": "AUTOMATED",
        "version": "1.0.0",
        "executionConfig": {"handler": "e2e_logs_handlers:reserve"},
    },
    "slow.json": {
        "id": "slow-step",
        "name": "Slow step",
        "type": "AUTOMATED",
        "version": "1.0.0",
        "executionConfig": {"handler": "e2e_logs_handlers:slow"},
    },
}


@dataclass
class Dev:
    base: str
    process: subprocess.Popen[bytes]
    var_dir: Path
    stdout: Path
    stderr: Path

    @property
    def key(self) -> str:
        return (self.var_dir / "dev-api-key").read_text().strip()

    def submit(self, body: dict[str, Any], **headers: str) -> httpx.Response:
        response = httpx.post(
            f"{self.base}/api/v1/tasks", json=body, headers={"X-API-Key": self.key, **headers}
        )
        assert response.status_code == 201, response.text
        return response

    def until(self, task_id: str, statuses: set[str], timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            body: dict[str, Any] = httpx.get(
                f"{self.base}/api/v1/tasks/{task_id}", headers={"X-API-Key": self.key}
            ).json()
            if body.get("status") in statuses or time.monotonic() > deadline:
                return body
            time.sleep(0.05)

    def interrupt(self, timeout: float = 60) -> int:
        """Ctrl-C: SIGINT to every process of the group, as a terminal does."""
        os.killpg(self.process.pid, signal.SIGINT)
        return self.process.wait(timeout)


def start_dev(database_url: str, tmp_path: Path, **env: str) -> Dev:
    code = tmp_path / "code"
    code.mkdir()
    (code / "e2e_logs_handlers.py").write_text(HANDLERS)
    definitions = tmp_path / "definitions"
    definitions.mkdir()
    for name, definition in DEFINITIONS.items():
        (definitions / name).write_text(json.dumps(definition))
    port = free_port()
    var_dir = tmp_path / "var"
    environ = {
        **os.environ,
        "TASKEXEC_DATABASE_URL": database_url,
        "TASKEXEC_VAR_DIR": str(var_dir),
        "TASKEXEC_DEFINITIONS_DIR": str(definitions),
        "TASKEXEC_LOG_LEVEL": "INFO",
        "TASKEXEC_RATE_LIMIT": "off",
        "PYTHONPATH": os.pathsep.join([str(code), str(ROOT)]),
        **env,
    }
    environ.pop("TASKEXEC_NATS_URL", None)
    stdout, stderr = tmp_path / "dev.out", tmp_path / "dev.err"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "dev", "--port", str(port)],
            env=environ,
            cwd=tmp_path,
            stdout=out,
            stderr=err,
            start_new_session=True,  # a group of its own, as a terminal's foreground job
        )
    dev = Dev(f"http://127.0.0.1:{port}", process, var_dir, stdout, stderr)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"dev exited early:\n{stderr.read_text()}")
        try:
            if httpx.get(f"{dev.base}/health", timeout=1).status_code == 200:
                return dev
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    stop(dev)
    raise AssertionError(f"dev did not become healthy:\n{stderr.read_text()}")


def stop(dev: Dev) -> None:
    if dev.process.poll() is None:
        os.killpg(dev.process.pid, signal.SIGKILL)
        dev.process.wait(10)


@pytest.fixture
def json_dev(database_url: str, tmp_path: Path) -> Iterator[Dev]:
    dev = start_dev(database_url, tmp_path, TASKEXEC_LOG_FORMAT="json")
    try:
        yield dev
    finally:
        stop(dev)


@pytest.fixture
def text_dev(database_url: str, tmp_path: Path) -> Iterator[Dev]:
    dev = start_dev(database_url, tmp_path)  # the default format, as ``make run``
    try:
        yield dev
    finally:
        stop(dev)


def test_json_logs_of_serve_and_worker(json_dev: Dev) -> None:
    done = json_dev.submit(
        {"taskDefinitionId": "calculate-order-total", "input": EXAMPLE_INPUT},
        **{"X-Request-ID": "submit-from-e2e"},
    )
    assert done.headers["x-request-id"] == "submit-from-e2e"
    failing = json_dev.submit({"taskDefinitionId": "reserve-stock", "input": {"have": 2}})
    failing_id, request_id = failing.json()["id"], failing.headers["x-request-id"]
    assert json_dev.until(done.json()["id"], {"COMPLETED"})["status"] == "COMPLETED"
    assert json_dev.until(failing_id, {"FAILED"})["status"] == "FAILED"
    time.sleep(0.5)  # the last lines on their way out
    assert json_dev.interrupt() == 0

    text = json_dev.stderr.read_text()
    lines = [json.loads(line) for line in text.splitlines()]  # every line: one object
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    assert all(line["time"].endswith("Z") for line in lines)

    access = [line for line in lines if line["logger"] == "taskexec.access"]
    submits = [
        line for line in access if (line["method"], line["route"]) == ("POST", "/api/v1/tasks")
    ]
    assert [line["request_id"] for line in submits] == ["submit-from-e2e", request_id]
    key_id = json_dev.key.split("_")[1]
    for line in submits:
        assert (line["status"], line["principal"], line["principal_kind"]) == (
            201,
            key_id,
            "apikey",
        )
        assert line["duration_ms"] > 0
    assert json_dev.key not in text and json_dev.key.split("_")[2] not in text

    said = [line for line in lines if line["logger"] == "e2e_handlers"]
    assert said, text
    assert said[0]["message"] == "reserving, 2 left"
    assert (said[0]["task_id"], said[0]["attempt"]) == (failing_id, 1)
    worker = said[0]["worker"]
    assert worker
    failures = [line for line in lines if line["logger"] == "workers.attempt"]
    assert failures[0]["level"] == "WARNING"
    assert (failures[0]["task_id"], failures[0]["worker"]) == (failing_id, worker)
    assert "InventoryError: only 2 left" in failures[0]["traceback"]
    assert failures[0]["traceback"].startswith("Traceback (most recent call last):")
    ready = [line for line in lines if line["message"].startswith(f"worker {worker} ready")]
    assert ready and ready[0]["worker"] == worker  # the worker's own lines name it too


def test_ctrl_c_stops_every_process_quietly(text_dev: Dev) -> None:
    """As ``make run`` (text logs), with a task running when Ctrl-C comes."""
    children = _children(text_dev.process.pid)
    assert len(children) >= 2, children  # the nats-server and the worker
    slow = text_dev.submit({"taskDefinitionId": "slow-step", "input": {"seconds": 1.5}})
    slow_id = slow.json()["id"]
    assert text_dev.until(slow_id, {"RUNNING"})["status"] == "RUNNING"

    assert text_dev.interrupt() == 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and [pid for pid in children if _alive(pid)]:
        time.sleep(0.1)
    assert [pid for pid in children if _alive(pid)] == []
    output = text_dev.stdout.read_text() + text_dev.stderr.read_text()
    for trouble in ("Traceback", " ERROR ", "unreachable", "UnexpectedEOF", "KeyboardInterrupt"):
        assert trouble not in output, output

    # The running task was let finish (the worker's grace), not handed back.
    assert "handing back" not in output, output


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(line) for line in out.stdout.split()]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"
