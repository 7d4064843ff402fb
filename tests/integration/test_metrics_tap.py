"""The task families of ``serve``'s /metrics, counted from the events the projection
applies (api/metrics/tap.py), on SQLite and PostgreSQL: workers' reports are recorded
with chosen times, so run and queue-wait times are known to the microsecond."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from litestar.testing import TestClient

from api.http.app import create_app
from api.runtime import Runtime
from api.settings import Settings
from commands.messages import RecordReport
from tests.conftest import EXAMPLE_INPUT, EXAMPLE_OUTPUT
from tests.metrics_support import Samples, eventually, samples, value
from tests.security_support import new_key, serving

TASKS = "/api/v1/tasks"
TOTAL = "calculate-order-total"
ONE_RETRY = {"retryPolicy": {"maxRetries": 1, "retryInterval": 1, "backoffMultiplier": 1}}


def submit(client: TestClient[Any], **fields: Any) -> tuple[UUID, datetime]:
    body = {"taskDefinitionId": TOTAL, "input": EXAMPLE_INPUT, **fields}
    created = client.post(TASKS, json=body)
    assert created.status_code == 201, created.text
    answer = created.json()
    return UUID(answer["id"]), datetime.fromisoformat(answer["createdAt"])


def record(runtime: Runtime, *reports: RecordReport) -> None:
    runtime.service.record_reports(reports)
    runtime.parts.wakeups()


def scrape(client: TestClient[Any]) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    return samples(response.text)


def report(task_id: UUID, attempt: int, kind: str, at: datetime, **fields: Any) -> RecordReport:
    return RecordReport(task_id, attempt, kind, "w-1", at, **fields)


def test_attempts_ends_and_times_are_counted_once_each(database_url: str, tmp_path: Path) -> None:
    with serving(database_url, tmp_path) as (client, runtime):
        done, done_at = submit(client)
        retried, _ = submit(client, executionConfig=ONE_RETRY)
        running_cancel, _ = submit(client)
        pending_cancel, _ = submit(client)
        timed_out, _ = submit(client, executionConfig={"retryPolicy": {"maxRetries": 0}})
        t = datetime.now(UTC) + timedelta(seconds=10)
        record(
            runtime,
            report(done, 1, "started", t),
            report(done, 1, "completed", t + timedelta(seconds=2), output=EXAMPLE_OUTPUT),
            report(retried, 1, "failed", t + timedelta(seconds=1), started_at=t, error_type="E"),
            report(running_cancel, 1, "started", datetime.now(UTC)),  # cancelled below
            report(
                timed_out, 1, "failed", t + timedelta(seconds=4), started_at=t, error_type="TIMEOUT"
            ),
        )
        for task_id in (running_cancel, pending_cancel):
            assert client.post(f"{TASKS}/{task_id}/cancel", json={}).status_code == 200
        # The retry's second attempt (its work was due at once), failing for good.
        later = t + timedelta(seconds=30)
        record(
            runtime,
            report(
                retried, 2, "failed", later + timedelta(seconds=3), started_at=later, error_type="E"
            ),
        )

        def counted() -> Samples:
            found = scrape(client)
            assert value(found, "taskexec_tasks_submitted_total", definition=TOTAL) == 5
            assert (
                value(found, "taskexec_tasks_finished_total", definition=TOTAL, status="FAILED")
                == 1
            )
            # The status gauge reads the read model, whose projection applies the same
            # events just after the counters' tap: wait for it too.
            assert value(found, "taskexec_tasks", status="PENDING") == 0
            assert value(found, "taskexec_tasks", status="FAILED") == 1
            return found

        found = eventually(counted)
        finished = {
            status: value(found, "taskexec_tasks_finished_total", definition=TOTAL, status=status)
            for status in ("COMPLETED", "FAILED", "TIMED_OUT", "CANCELLED")
        }
        assert finished == {"COMPLETED": 1, "FAILED": 1, "TIMED_OUT": 1, "CANCELLED": 2}
        attempts = {
            outcome: value(found, "taskexec_task_attempts_total", definition=TOTAL, outcome=outcome)
            for outcome in ("completed", "failed", "timed_out", "cancelled")
        }
        # Only the running task's cancel ends an attempt; the pending one had none.
        assert attempts == {"completed": 1, "failed": 2, "timed_out": 1, "cancelled": 1}
        run = {
            key: value(found, f"taskexec_task_run_seconds_{key}", definition=TOTAL)
            for key in ("count", "sum")
        }
        assert run["count"] == 5  # every attempt that ended: 1 + 2 + 1 + 1 (the cancel)
        # 2 + 1 + 3 + 4 seconds, and the cancelled one ran for moments.
        assert run["sum"] == pytest.approx(10.0, abs=1.0)
        wait = "taskexec_task_queue_wait_seconds"
        assert value(found, f"{wait}_count", definition=TOTAL) == 4  # first starts only
        assert value(found, f"{wait}_bucket", definition=TOTAL, le="+Inf") == 4
        assert (t - done_at).total_seconds() > 9  # three waited about 10 s, one moments
        assert value(found, f"{wait}_bucket", definition=TOTAL, le="5.0") == 1
        statuses = {
            s: value(found, "taskexec_tasks", status=s)
            for s in ("COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT", "PENDING", "RUNNING")
        }
        assert statuses == {
            "COMPLETED": 1,
            "FAILED": 1,
            "CANCELLED": 2,
            "TIMED_OUT": 1,
            "PENDING": 0,
            "RUNNING": 0,
        }


def test_tasks_from_before_a_restart_are_counted_from_the_read_model(
    database_url: str, tmp_path: Path
) -> None:
    """A new process knows nothing of tasks submitted and started before it began: it
    reads their definition, submission and start from the read model."""
    t = datetime.now(UTC) + timedelta(seconds=10)
    with serving(database_url, tmp_path) as (client, runtime):
        task_id, _ = submit(client)
        waiting, _ = submit(client)
        record(runtime, report(task_id, 1, "started", t))

        def started() -> None:
            found = scrape(client)
            assert value(found, "taskexec_task_queue_wait_seconds_count", definition=TOTAL) == 1
            # ...and the read model (projected just after the tap) holds the start.
            assert client.get(f"{TASKS}/{task_id}").json()["status"] == "RUNNING"

        eventually(started)
    with serving(database_url, tmp_path) as (client, runtime):
        record(
            runtime,
            report(task_id, 1, "completed", t + timedelta(seconds=5), output=EXAMPLE_OUTPUT),
            report(waiting, 1, "started", t),
        )

        def counted() -> Samples:
            found = scrape(client)
            assert (
                value(found, "taskexec_task_attempts_total", definition=TOTAL, outcome="completed")
                == 1
            )
            assert value(found, "taskexec_task_queue_wait_seconds_count", definition=TOTAL) == 1
            return found

        found = eventually(counted)
        assert value(found, "taskexec_tasks_submitted_total", definition=TOTAL) == 0  # before
        assert value(found, "taskexec_task_run_seconds_sum", definition=TOTAL) == pytest.approx(5.0)
        assert (
            value(found, "taskexec_tasks_finished_total", definition=TOTAL, status="COMPLETED") == 1
        )
        assert value(found, "taskexec_task_queue_wait_seconds_sum", definition=TOTAL) > 9


def test_metrics_off_counts_and_serves_nothing(database_url: str, tmp_path: Path) -> None:
    runtime = Runtime.open(Settings(database_url=database_url, var_dir=tmp_path, metrics=False))
    try:
        assert runtime.parts.metrics is None
        with TestClient(create_app(runtime, None)) as client:
            client.headers["X-API-Key"] = new_key(runtime)
            submit(client)
            assert client.get("/metrics").status_code == 404
            assert client.get("/health/live").status_code == 200
    finally:
        runtime.close()


class Sink:
    def __init__(self) -> None:
        self.counts: dict[tuple[str, ...], int] = {}
        self.times: list[tuple[str, str, float]] = []

    def submitted(self, definition: str, count: int) -> None:
        self._add(("submitted", definition), count)

    def finished(self, definition: str, status: str, count: int) -> None:
        self._add(("finished", definition, status), count)

    def attempts(self, definition: str, outcome: str, count: int) -> None:
        self._add(("attempts", definition, outcome), count)

    def ran(self, definition: str, seconds: float) -> None:
        self.times.append(("ran", definition, seconds))

    def waited(self, definition: str, seconds: float) -> None:
        self.times.append(("waited", definition, seconds))

    def _add(self, key: tuple[str, ...], count: int) -> None:
        self.counts[key] = self.counts.get(key, 0) + count


def test_a_batch_that_rolls_back_is_counted_once_it_commits(
    database_url: str, tmp_path: Path
) -> None:
    """The runner calls ``forget`` after a failed batch and applies it again: what the
    first try saw is dropped; counts and the tasks remembered change only on ``remember``."""
    from api.metrics.tap import MetricsTap

    with serving(database_url, tmp_path) as (client, runtime):
        task_id, _ = submit(client)
        t = datetime.now(UTC)
        record(runtime, report(task_id, 1, "completed", t, started_at=t, output=EXAMPLE_OUTPUT))
        events = runtime.service.read_log(0, 1000)
    sink = Sink()
    tap = MetricsTap(sink)
    tap.apply(None, events, 1)  # type: ignore[arg-type]  # no read: every task is new
    tap.forget()
    tap.remember()
    assert sink.counts == {}
    tap.apply(None, events, 1)  # type: ignore[arg-type]
    tap.remember()
    assert sink.counts == {
        ("submitted", TOTAL): 1,
        ("attempts", TOTAL, "completed"): 1,
        ("finished", TOTAL, "COMPLETED"): 1,
    }
    assert sorted(kind for kind, _, _ in sink.times) == ["ran", "waited"]
    tap.remember()  # nothing staged: nothing more
    assert sum(sink.counts.values()) == 3
