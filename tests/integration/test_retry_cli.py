"""``taskexec tasks retry`` as an operator runs it (the real command line, SQLite and
PostgreSQL): a dry run lists and records nothing; a run requeues exactly the selection
(status, definition, error type, when the task finished) with the operator as actor and
the reason given; a second run requeues nothing more; bad arguments are exit status 2."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from api.runtime import Runtime
from api.settings import Settings
from domain.task import Task
from domain.values import ANONYMOUS, Actor, TaskStatus
from tests.conftest import taskexec

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
WORKER = Actor("w-1", "worker")


@pytest.fixture
def runtime(database_url: str, tmp_path: Path) -> Iterator[Runtime]:
    """``serve``'s write side and read models (no NATS): it projects what the CLI writes."""
    opened = Runtime.open(Settings(database_url=database_url, var_dir=tmp_path))
    yield opened
    opened.close()


def finished(
    runtime: Runtime, how: str, hour: int, definition: str = "calculate-order-total"
) -> UUID:
    """A task that ended ``how`` (an error type, or CANCELLED) at ``T0`` + ``hour`` hours."""
    catalog_definition = runtime.catalog.get(definition)
    assert catalog_definition is not None
    at = T0 + timedelta(hours=hour)
    task = Task.submit(
        task_id=uuid4(),
        at=at - timedelta(minutes=1),
        actor=ANONYMOUS,
        definition=catalog_definition,
        input={"orderId": "ORD-1", "items": []},
        retry_policy=None,
    )
    if how == "CANCELLED":
        task.cancel(reason="stop", force=False, at=at, actor=ANONYMOUS)
    else:
        task.start(attempt=1, worker="w-1", at=at - timedelta(seconds=5), actor=WORKER)
        task.fail(
            attempt=1, error_type=how, error_message="x", at=at, actor=WORKER, retryable=False
        )
    runtime.service.save(task)
    return task.id


def settled(runtime: Runtime) -> None:
    runtime.runner.wait_for(runtime.service.recorder.max_notification_id() or 0, 10)


def retry(database_url: str, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return taskexec(database_url, tmp, "tasks", "retry", *args)


def status(runtime: Runtime, task_id: UUID) -> TaskStatus:
    return runtime.service.load(task_id).status


def test_dry_run_then_run_then_run_again(
    runtime: Runtime, database_url: str, tmp_path: Path
) -> None:
    boom = [finished(runtime, "Boom", hour) for hour in (1, 2, 3)]
    other = finished(runtime, "Other", 2)
    payment = finished(runtime, "Boom", 2, definition="process-payment")
    cancelled = finished(runtime, "CANCELLED", 2)
    timeout = finished(runtime, "TIMEOUT", 2)
    settled(runtime)
    head = runtime.service.recorder.max_notification_id()
    selection = [
        "--status",
        "FAILED",
        "--error-type",
        "Boom",
        "--definition",
        "calculate-order-total",
    ]

    dry = retry(database_url, tmp_path, *selection, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    listed = [line.split()[0] for line in dry.stdout.splitlines()]
    assert listed == [str(t) for t in boom]  # oldest first
    assert "FAILED" in dry.stdout and "Boom" in dry.stdout
    assert "would retry 3 task(s); nothing recorded" in dry.stderr
    assert runtime.service.recorder.max_notification_id() == head

    run = retry(database_url, tmp_path, *selection, "--reason", "fixed in 1.4.2")
    assert run.returncode == 0, run.stderr
    assert "retried 3 of 3 task(s); skipped 0" in run.stdout
    assert "pass --until " in run.stdout
    assert "retry [" in run.stderr and "tasks/s" in run.stderr  # the progress bar
    for task_id in boom:
        task = runtime.service.load(task_id)
        assert (task.status, task.attempt, task.error) == (TaskStatus.PENDING, 1, None)
        assert task.awaits_start(2)
        requeued = list(runtime.service.events.get(task_id))[-1]
        assert isinstance(requeued, Task.Requeued)
        assert (requeued.attempt, requeued.reason) == (2, "fixed in 1.4.2")
        assert requeued.actor["kind"] == "operator" and "@" in requeued.actor["id"]
    for untouched in (other, payment, cancelled, timeout):
        assert status(runtime, untouched) is not TaskStatus.PENDING

    # Again, at once (the read model may still show them FAILED): nothing more.
    head = runtime.service.recorder.max_notification_id()
    again = retry(database_url, tmp_path, *selection)
    assert again.returncode == 0, again.stderr
    assert "retried 0 of" in again.stdout
    assert runtime.service.recorder.max_notification_id() == head
    settled(runtime)
    assert "retried 0 of 0 task(s)" in retry(database_url, tmp_path, *selection).stdout


def test_statuses_and_the_time_window(runtime: Runtime, database_url: str, tmp_path: Path) -> None:
    early, middle, late = (finished(runtime, "TIMEOUT", hour) for hour in (1, 2, 3))
    cancelled = finished(runtime, "CANCELLED", 2)
    failed = finished(runtime, "Boom", 2)
    settled(runtime)
    window = ["--since", "2026-01-05T10:30:00Z", "--until", "2026-01-05T11:30"]  # no zone: UTC

    run = retry(database_url, tmp_path, "--status", "timed_out,CANCELLED", *window)
    assert run.returncode == 0, run.stderr
    assert "retried 2 of 2 task(s)" in run.stdout
    assert {status(runtime, t) for t in (middle, cancelled)} == {TaskStatus.PENDING}
    assert status(runtime, early) is status(runtime, late) is TaskStatus.TIMED_OUT
    assert status(runtime, failed) is TaskStatus.FAILED


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--status", "COMPLETED"], "--status COMPLETED: only FAILED, TIMED_OUT, CANCELLED"),
        (["--status", "FAILED", "--since", "yesterday"], "'yesterday' is not an ISO 8601"),
        (
            ["--status", "FAILED", "--since", "2026-01-02", "--until", "2026-01-01"],
            "--since must lie before --until",
        ),
    ],
)
def test_bad_arguments_are_exit_status_2(
    database_url: str, tmp_path: Path, args: list[str], message: str
) -> None:
    result = retry(database_url, tmp_path, *args)
    assert result.returncode == 2, result.stdout
    assert message in result.stderr
    assert result.stdout == ""
