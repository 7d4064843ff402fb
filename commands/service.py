"""TaskService: the write side. Every change is an appended event.

eventsourcing is synchronous: call these methods from worker threads, never from
the event loop. Each method reads as load -> act -> save.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import ProcessRecorder, Tracking, Transcoder

from commands.catalog import DefinitionCatalog
from commands.errors import Conflict, NotFound, ValidationFailed
from commands.messages import CancelTask, Outcome, RecordReport, SubmitTask
from commands.persistence import APPLICATION_NAME
from commands.transcoder import PayloadSafeTranscoder
from domain.errors import StaleResult, TaskNotCancellable
from domain.task import Task
from domain.values import Actor

log = logging.getLogger(__name__)

RESULTS_TRACKING = "TASK_RESULTS"  # tracking name of the results consumer's stream position


class UndecodableEvent(Exception):
    """A stored event cannot be turned back into a domain event."""

    def __init__(self, position: int, cause: Exception) -> None:
        super().__init__(f"notification {position} cannot be decoded: {cause!r}")
        self.position = position


def utcnow() -> datetime:
    return datetime.now(UTC)


class TaskService(Application[UUID]):
    """Submit, cancel, and record what workers report, as events in one store."""

    name = APPLICATION_NAME

    def __init__(
        self,
        env: dict[str, str],
        catalog: DefinitionCatalog,
        clock: Callable[[], datetime] = utcnow,
        new_id: Callable[[], UUID] = uuid4,
    ) -> None:
        super().__init__(env)
        self.catalog = catalog
        self._clock = clock
        self._new_id = new_id

    def construct_transcoder(self) -> Transcoder:
        return PayloadSafeTranscoder()

    def construct_recorder(self) -> ProcessRecorder:
        # A process recorder records tracking rows with events in one transaction,
        # which is what makes the results consumer exactly-once.
        recorder = self.factory.process_recorder()
        assert isinstance(recorder, ProcessRecorder)
        return recorder

    @property
    def process_recorder(self) -> ProcessRecorder:
        assert isinstance(self.recorder, ProcessRecorder)
        return self.recorder

    # -- commands -------------------------------------------------------------------

    def submit(self, cmd: SubmitTask) -> Outcome:
        """Record a new PENDING task; refuse unknown definitions and invalid input."""
        definition = self.catalog.get(cmd.definition_id)
        if definition is None:
            raise NotFound(
                f"task definition '{cmd.definition_id}' not found",
                {"field": "taskDefinitionId", "value": cmd.definition_id},
            )
        violations = self.catalog.input_violations(definition.id, cmd.input)
        if violations:
            raise ValidationFailed(
                "input does not match the task definition's inputSchema",
                {
                    "field": "input",
                    "violations": [{"path": v.path, "message": v.message} for v in violations],
                },
            )
        task = Task.submit(
            task_id=self._new_id(),
            at=self._clock(),
            actor=cmd.actor,
            definition=definition,
            input=cmd.input,
            workflow_instance_id=cmd.workflow_instance_id,
            priority=cmd.priority,
            timeout_ms=cmd.timeout_ms,
            retry_policy=cmd.retry_policy,
        )
        return self._outcome(task, self.save(task))

    def cancel(self, cmd: CancelTask) -> Outcome:
        """Cancel a task that has not finished; 409-style Conflict when it has."""
        task = self.load(cmd.task_id)
        try:
            task.cancel(reason=cmd.reason, force=cmd.force, at=self._clock(), actor=cmd.actor)
        except TaskNotCancellable as exc:
            raise Conflict(
                f"task {cmd.task_id} is {exc.status} and cannot be cancelled",
                {"status": exc.status},
            ) from None
        return self._outcome(task, self.save(task))

    def record_reports(self, reports: Sequence[RecordReport], position: int) -> int:
        """Apply a batch of worker reports and the stream position in one transaction.

        Duplicates and late reports (after a cancel, say) change nothing. A batch at or
        below the recorded position was already applied: it is skipped whole. Returns the
        number of events recorded.
        """
        recorder = self.process_recorder
        if recorder.has_tracking_id(RESULTS_TRACKING, position):
            return 0
        tasks: dict[UUID, Task] = {}
        for report in reports:
            task: Task | None = tasks.get(report.task_id)
            if task is None:
                try:
                    task = self.repository.get(report.task_id)
                except AggregateNotFoundError:
                    log.warning("report for unknown task %s discarded", report.task_id)
                    continue
                tasks[report.task_id] = task
            try:
                _apply_report(task, report)
            except StaleResult as exc:
                log.info("stale report discarded: %s", exc)
        events: list[Any] = [event for task in tasks.values() for event in task.collect_events()]
        self.events.put(events, tracking=Tracking(RESULTS_TRACKING, position))
        return len(events)

    def read_log(self, after: int, limit: int) -> list[tuple[int, Any]]:
        """Decoded events of the notification log after position ``after``, in order."""
        notifications = self.recorder.select_notifications(
            start=after, limit=limit, inclusive_of_start=False
        )
        decoded: list[tuple[int, Any]] = []
        for notification in notifications:
            try:
                decoded.append((notification.id, self.mapper.to_domain_event(notification)))
            except Exception as exc:
                raise UndecodableEvent(notification.id, exc) from exc
        return decoded

    def load(self, task_id: UUID) -> Task:
        try:
            task: Any = self.repository.get(task_id)
        except AggregateNotFoundError:
            raise NotFound(f"task {task_id} not found", {"field": "taskId"}) from None
        assert isinstance(task, Task)
        return task

    def _outcome(self, task: Task, recordings: Sequence[Any]) -> Outcome:
        return Outcome(
            task_id=task.id,
            status=task.status.value,
            created_at=task.created_at,
            updated_at=task.updated_at,
            position=recordings[-1].notification.id,
        )


def _apply_report(task: Task, report: RecordReport) -> None:
    worker = Actor(id=report.worker, kind="worker")
    if report.kind == "started":
        task.start(attempt=report.attempt, worker=report.worker, at=report.at, actor=worker)
    elif report.kind == "completed":
        task.complete(attempt=report.attempt, output=report.output, at=report.at, actor=worker)
    elif report.kind == "failed":
        task.fail(
            attempt=report.attempt,
            error_type=report.error_type,
            error_message=report.error_message,
            at=report.at,
            actor=worker,
        )
    else:
        log.warning("report of unknown kind %r for task %s discarded", report.kind, task.id)
