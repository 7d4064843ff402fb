"""Metrics and probes scraped from real processes: ``taskexec serve`` and ``taskexec
worker --metrics-port P`` on an external nats-server, on SQLite and PostgreSQL. Tasks run
(some complete, one fails), and every family moves as it should; then NATS goes away
and both processes say they are not ready, while they stay live."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from domain.executor_pool import DEFAULT_POOL
from tests.conftest import EXAMPLE_INPUT, free_port
from tests.metrics_support import Samples, eventually, samples, value
from workers.nats_server import EmbeddedNatsServer

ROOT = Path(__file__).parents[2]
TOTAL, PAYMENT = "calculate-order-total", "process-payment"
STATUSES = ("PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT")


def taskexec(env: dict[str, str], cwd: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


@contextlib.contextmanager
def processes(env: dict[str, str], cwd: Path, *commands: list[str]) -> Iterator[Path]:
    """The commands running (their output in one log), stopped afterwards."""
    log_path = cwd / "processes.log"
    with log_path.open("wb") as log:
        started = [
            subprocess.Popen(
                [sys.executable, "-m", "api.cli", *command],
                env=env,
                cwd=cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            for command in commands
        ]
        try:
            yield log_path
        finally:
            for process in started:
                process.send_signal(signal.SIGTERM)
            for process in started:
                try:
                    process.wait(40)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(10)


def until_ok(url: str, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)


def scrape(url: str, key: str | None = None) -> Samples:
    response = httpx.get(url, headers={"X-API-Key": key} if key else {}, timeout=5)
    assert response.status_code == 200, response.text
    return samples(response.text)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def test_metrics_move_as_tasks_run_and_probes_follow_nats(
    database_url: str, nats_server: EmbeddedNatsServer, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "TASKEXEC_DATABASE_URL": database_url,
        "TASKEXEC_NATS_URL": nats_server.url,
        "TASKEXEC_VAR_DIR": str(tmp_path / "var"),
        "TASKEXEC_RATE_LIMIT": "off",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("TASKEXEC_METRICS", None)  # on by default
    make_key = ("apikey", "create", "--name")
    tasks_key = taskexec(env, tmp_path, *make_key, "t", "--permissions", "tasks:execute,tasks:list")
    metrics_key = taskexec(env, tmp_path, *make_key, "prometheus", "--permissions", "metrics:read")
    port, worker_port = free_port(), free_port()
    base, worker = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{worker_port}"
    serve = ["serve", "--port", str(port)]
    run = ["worker", "--id", "w1", "--concurrency", "2", "--metrics-port", str(worker_port)]
    run += ["--executors", f"{DEFAULT_POOL},integration-executor"]  # process-payment's pool
    with processes(env, tmp_path, serve, run) as log:
        until_ok(f"{base}/health/ready", log)
        until_ok(f"{worker}/health/ready", log)
        assert httpx.get(f"{base}/metrics", headers={"X-API-Key": tasks_key}).status_code == 403
        serve_before = scrape(f"{base}/metrics", metrics_key)
        worker_before = scrape(f"{worker}/metrics")

        client = httpx.Client(base_url=base, headers={"X-API-Key": tasks_key}, timeout=10)
        for _ in range(6):
            body = {"taskDefinitionId": TOTAL, "input": EXAMPLE_INPUT}
            assert client.post("/api/v1/tasks", json=body).status_code == 201
        payment = {  # its endpoint (port 9) refuses: failed at once, no retry left
            "taskDefinitionId": PAYMENT,
            "input": {"orderId": "O-1", "amount": 5, "currency": "EUR"},
            "executionConfig": {"retryPolicy": {"maxRetries": 0}},
        }
        assert client.post("/api/v1/tasks", json=payment).status_code == 201

        def finished() -> tuple[Samples, Samples]:
            after = scrape(f"{base}/metrics", metrics_key)
            name = "taskexec_tasks_finished_total"
            assert moved(serve_before, after, name, definition=TOTAL, status="COMPLETED") == 6
            assert moved(serve_before, after, name, definition=PAYMENT, status="FAILED") == 1
            # The tap counts a batch once it is committed, moments before the runner moves
            # its position on: the lags are read at the scrape, so wait for them too.
            for family in ("projection_lag_events", "relay_lag_events", "results_lag_messages"):
                assert value(after, f"taskexec_{family}") == 0, family
            return after, scrape(f"{worker}/metrics")

        after, worker_after = eventually(finished, timeout=60)
        submitted = "taskexec_tasks_submitted_total"
        assert moved(serve_before, after, submitted, definition=TOTAL) == 6
        assert moved(serve_before, after, submitted, definition=PAYMENT) == 1
        attempts = "taskexec_task_attempts_total"
        assert moved(serve_before, after, attempts, definition=TOTAL, outcome="completed") == 6
        assert moved(serve_before, after, attempts, definition=PAYMENT, outcome="failed") == 1
        for histogram in ("taskexec_task_run_seconds", "taskexec_task_queue_wait_seconds"):
            assert moved(serve_before, after, f"{histogram}_count", definition=TOTAL) == 6
        for status in STATUSES:  # the gauge is the read model's count
            listed = client.get("/api/v1/tasks", params={"status": status, "limit": 1})
            total = listed.json()["pagination"]["totalItems"]
            assert value(after, "taskexec_tasks", status=status) == total, status
        queues = {
            (pool, priority)
            for pool in (DEFAULT_POOL, "integration-executor")
            for priority in ("CRITICAL", "HIGH", "MEDIUM", "LOW")
        }
        assert {
            (labels["pool"], labels["priority"])
            for (name, sample), _ in after.items()
            if name == "taskexec_work_pending" and (labels := dict(sample))
        } == queues  # every queue of both pools shown (the relay made the second's)
        for pool, priority in queues:
            assert value(after, "taskexec_work_pending", pool=pool, priority=priority) == 0
        route = {"method": "POST", "route": "/api/v1/tasks", "status": "201"}
        assert moved(serve_before, after, "taskexec_http_requests_total", **route) == 7

        worker_attempts = "taskexec_worker_attempts_total"
        done = {"definition": TOTAL, "outcome": "completed"}
        assert moved(worker_before, worker_after, worker_attempts, **done) == 6
        failed = {"definition": PAYMENT, "outcome": "failed"}
        assert moved(worker_before, worker_after, worker_attempts, **failed) == 1
        handler = "taskexec_worker_handler_seconds_count"
        assert moved(worker_before, worker_after, handler, definition=TOTAL) == 6
        assert value(worker_after, "taskexec_worker_slots") == 2
        assert value(worker_after, "taskexec_worker_attempts_running") == 0

        nats_server.stop()  # a dependency goes: neither is ready, both are live

        def not_ready() -> None:
            assert httpx.get(f"{base}/health/ready", timeout=5).status_code == 503
            assert httpx.get(f"{worker}/health/ready", timeout=5).status_code == 503

        eventually(not_ready, timeout=20)
        assert httpx.get(f"{base}/health/live", timeout=5).status_code == 200
        assert httpx.get(f"{worker}/health/live", timeout=5).status_code == 200
        assert httpx.get(f"{base}/health", timeout=5).status_code == 503
