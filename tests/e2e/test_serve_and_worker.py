"""End to end with the parts started separately, as in production: ``taskexec serve`` and
``taskexec worker`` as their own processes, both on an external NATS given by
``TASKEXEC_NATS_URL`` (here a nats-server of the test's own), on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import EXAMPLE_INPUT, EXAMPLE_OUTPUT, free_port
from workers.nats_server import EmbeddedNatsServer

ROOT = Path(__file__).parents[2]


def test_serve_and_two_workers_on_an_external_nats(
    database_url: str, nats_server: EmbeddedNatsServer, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "TASKEXEC_DATABASE_URL": database_url,
        "TASKEXEC_NATS_URL": nats_server.url,
        "TASKEXEC_VAR_DIR": str(tmp_path / "var"),
        "PYTHONPATH": str(ROOT),
        "TASKEXEC_RATE_LIMIT": "10000/minute",  # this test polls every 20 ms
    }
    # As an operator would: a service account's key, made before the API starts.
    permissions = ["--permissions", "tasks:execute,tasks:read"]
    created = subprocess.run(
        [sys.executable, "-m", "api.cli", "apikey", "create", "--name", "e2e", *permissions],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    auth = {"X-API-Key": created.stdout.strip()}
    log = (tmp_path / "processes.log").open("wb")
    serve = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "api.cli", "worker", "--id", f"w{i}", "--concurrency", "2"],
            env=env,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        for i in (1, 2)
    ]
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "processes.log").read_text()
            assert serve.poll() is None, (tmp_path / "processes.log").read_text()
            time.sleep(0.1)

        ids = [
            httpx.post(
                f"{base}/api/v1/tasks",
                json={"taskDefinitionId": "calculate-order-total", "input": EXAMPLE_INPUT},
                headers=auth,
            ).json()["id"]
            for _ in range(20)
        ]
        finished = []
        for task_id in ids:
            while True:
                body = httpx.get(f"{base}/api/v1/tasks/{task_id}", headers=auth).json()
                if body["status"] in ("COMPLETED", "FAILED"):
                    finished.append(body)
                    break
                assert time.monotonic() < deadline + 30, body
                time.sleep(0.02)
        assert {b["status"] for b in finished} == {"COMPLETED"}
        assert all(b["output"] == EXAMPLE_OUTPUT for b in finished)
        assert {b["executionMetadata"]["executionEnvironment"] for b in finished} <= {"w1", "w2"}
        # No embedded server was started: the external one was used.
        assert not (tmp_path / "var" / "nats" / "url").exists()
    finally:
        for process in [serve, *workers]:
            process.send_signal(signal.SIGTERM)
        for process in [serve, *workers]:
            try:
                process.wait(40)
            except subprocess.TimeoutExpired:
                process.kill()
        log.close()
    assert serve.returncode == 0
    assert [w.returncode for w in workers] == [0, 0]
