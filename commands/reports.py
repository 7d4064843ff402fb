"""How worker reports and hand-made results change a task: shared rules of the write side.

Output validation lives here: an output that breaks the definition's ``outputSchema`` fails
the attempt with ``OUTPUT_VALIDATION_ERROR`` (never retried) and the bad output is kept in
the Failed event, so history shows what came back. Validation uses the definition revision
the task was submitted against, not whatever the definition says today.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

from commands.catalog import Violation
from commands.messages import RecordReport
from domain.errors import StaleResult
from domain.task import OUTPUT_VALIDATION_ERROR, Task
from domain.values import Actor

log = logging.getLogger(__name__)

OutputCheck = Callable[[Task, Any], list[Violation]]


def apply_report(task: Task, report: RecordReport, check_output: OutputCheck) -> None:
    """Apply one worker report; StaleResult (from the aggregate) means: change nothing."""
    worker = Actor(id=report.worker, kind="worker")
    if report.kind != "started" and (
        report.started_at is not None or task.awaits_start(report.attempt)
    ):
        # An end implies its start: reported with it (``started_at``), or reported apart
        # and not here yet (JetStream redelivers out of order) — then it started at the
        # latest when it ended. Already recorded (this worker ran this very attempt
        # before, redelivered): only the end counts; and if the task no longer runs this
        # attempt, the end is refused below as stale as well.
        with contextlib.suppress(StaleResult):
            task.start(
                attempt=report.attempt,
                worker=report.worker,
                at=report.started_at or report.at,
                actor=worker,
            )
    if report.kind == "started":
        task.start(attempt=report.attempt, worker=report.worker, at=report.at, actor=worker)
    elif report.kind == "completed":
        violations = check_output(task, report.output)
        if violations:
            task.fail(
                attempt=report.attempt,
                error_type=OUTPUT_VALIDATION_ERROR,
                error_message=describe(violations),
                at=report.at,
                actor=worker,
                retryable=False,
                output=report.output,
            )
        else:
            task.complete(attempt=report.attempt, output=report.output, at=report.at, actor=worker)
    elif report.kind == "failed":
        task.fail(
            attempt=report.attempt,
            error_type=report.error_type,
            error_message=report.error_message,
            at=report.at,
            actor=worker,
            retryable=report.retryable,
            traceback=report.traceback,
        )
    else:
        log.warning("report of unknown kind %r for task %s discarded", report.kind, task.id)


def apply_reports(
    tasks: dict[UUID, Task], reports: Sequence[RecordReport], check_output: OutputCheck
) -> list[str]:
    """Apply ``reports`` to ``tasks`` in order; why each discarded one was discarded."""
    stale: list[str] = []
    for report in reports:
        task = tasks.get(report.task_id)
        if task is None:
            stale.append(f"report for unknown task {report.task_id}")
            continue
        try:
            apply_report(task, report, check_output)
        except StaleResult as exc:
            stale.append(str(exc))
    return stale


def describe(violations: list[Violation]) -> str:
    """One line per violation, for the error message of a failed attempt."""
    return "output does not match the outputSchema: " + "; ".join(
        f"{v.path}: {v.message}" for v in violations
    )
