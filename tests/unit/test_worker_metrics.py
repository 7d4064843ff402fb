"""A worker's metrics and its HTTP port (workers/metrics.py, workers/metrics_server.py):
outcomes, the bounded ``definition`` label, and real HTTP on a free port."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client import generate_latest

from tests.metrics_support import Samples, label_values, samples, value
from workers.attempt import Attempt, Result
from workers.handlers import HandlerRegistry
from workers.integration import IntegrationExecutor
from workers.metrics import MAX_DEFINITIONS, WorkerMetrics, outcome
from workers.metrics_server import MetricsServer
from workers.protocol import WorkItem


async def sleepy(payload: object, context: object) -> None:
    await asyncio.sleep(10)


def scraped(metrics: WorkerMetrics) -> Samples:
    return samples(generate_latest(metrics.registry).decode())


@pytest.fixture
def server() -> Iterator[tuple[MetricsServer, WorkerMetrics, str]]:
    metrics = WorkerMetrics(concurrency=3)
    server = MetricsServer(metrics.registry)
    port = server.start("127.0.0.1", 0)
    yield server, metrics, f"http://127.0.0.1:{port}"
    server.stop()


def test_outcomes() -> None:
    assert outcome(None) == "cancelled"
    assert outcome(Result("completed")) == "completed"
    assert outcome(Result("failed", error_type="ValueError")) == "failed"
    assert outcome(Result("failed", error_type="TIMEOUT")) == "timed_out"


def test_the_port_serves_metrics_and_probes(
    server: tuple[MetricsServer, WorkerMetrics, str],
) -> None:
    probes, metrics, base = server
    metrics.started()
    metrics.started()
    metrics.ended("calculate-order-total", Result("completed"), 0.25)
    metrics.ended("calculate-order-total", Result("failed", error_type="TIMEOUT"), 2.0)
    response = httpx.get(f"{base}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    found = samples(response.text)
    assert value(found, "taskexec_worker_slots") == 3
    assert value(found, "taskexec_worker_attempts_running") == 0
    attempts = "taskexec_worker_attempts_total"
    assert value(found, attempts, definition="calculate-order-total", outcome="completed") == 1
    assert value(found, attempts, definition="calculate-order-total", outcome="timed_out") == 1
    handler = "taskexec_worker_handler_seconds"
    assert value(found, f"{handler}_count", definition="calculate-order-total") == 2
    assert value(found, f"{handler}_sum", definition="calculate-order-total") == 2.25
    assert "taskexec_worker_attempts_created" not in {name for name, _ in found}

    assert httpx.get(f"{base}/health/live").json() == {"status": "ok"}
    assert httpx.get(f"{base}/health/ready").status_code == 503  # not started yet
    probes.ready = lambda: True
    assert httpx.get(f"{base}/health/ready/").json() == {"status": "ok"}
    probes.ready = lambda: 1 / 0 > 0
    assert httpx.get(f"{base}/health/ready").status_code == 503
    assert httpx.get(f"{base}/other").status_code == 404


def test_metrics_off_leaves_the_probes() -> None:
    probes = MetricsServer(None)
    port = probes.start("127.0.0.1", 0)
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/metrics").status_code == 404
        assert httpx.get(f"http://127.0.0.1:{port}/health/live").status_code == 200
    finally:
        probes.stop()


def test_a_port_in_use_fails_at_start(server: tuple[MetricsServer, WorkerMetrics, str]) -> None:
    port = int(server[2].rsplit(":", 1)[1])
    with pytest.raises(OSError, match="in use"):
        MetricsServer(None).start("127.0.0.1", port)


def test_definitions_past_the_bound_are_other() -> None:
    metrics = WorkerMetrics(concurrency=1)
    for n in range(MAX_DEFINITIONS + 50):
        metrics.started()
        metrics.ended(f"d{n}", Result("completed"), 0.001)
    found = scraped(metrics)
    definitions = label_values(found, "taskexec_worker_attempts_total", "definition")
    assert len(definitions) == MAX_DEFINITIONS + 1
    assert (
        value(found, "taskexec_worker_attempts_total", definition="other", outcome="completed")
        == 50
    )


async def test_attempts_tell_their_observer() -> None:
    metrics = WorkerMetrics(concurrency=1)
    item = WorkItem(
        task_id="t",
        attempt=1,
        task_type="AUTOMATED",
        definition_id="slow",
        input={},
        timeout_ms=50,
        priority="MEDIUM",
        handler=f"{__name__}:sleepy",
    )
    attempt = Attempt(item, "w", HandlerRegistry(), IntegrationExecutor(), metrics)
    running = asyncio.ensure_future(attempt.run())
    await asyncio.sleep(0.01)
    assert value(scraped(metrics), "taskexec_worker_attempts_running") == 1
    result = await running
    assert result is not None and result.error_type == "TIMEOUT"
    found = scraped(metrics)
    assert value(found, "taskexec_worker_attempts_running") == 0
    assert (
        value(found, "taskexec_worker_attempts_total", definition="slow", outcome="timed_out") == 1
    )
    assert value(found, "taskexec_worker_handler_seconds_sum", definition="slow") >= 0.05
