"""TaskService: the write side. Every change is an appended event.

eventsourcing is synchronous: call these methods from worker threads, never from
the event loop. Each method reads as load -> act -> save.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError, ProcessRecorder, Tracking, Transcoder
from jsonschema import Draft202012Validator

from commands import idempotency
from commands.catalog import DefinitionCatalog, Violation, as_details, schema_violations
from commands.errors import CommandError, Conflict, NotFound, ValidationFailed
from commands.messages import CancelTask, FinishManually, Outcome, RecordReport, SubmitTask
from commands.persistence import APPLICATION_NAME
from commands.reports import apply_report
from commands.transcoder import PayloadSafeTranscoder
from domain import apikey as _apikey  # noqa: F401  (registers the API-key topics for decoding)
from domain.definition import TaskDefinition
from domain.definition_record import DefinitionRecord, definition_record_id
from domain.errors import IllegalTransition, StaleResult, TaskNotCancellable
from domain.task import WORKER_LOST, Task
from domain.values import SYSTEM

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
        self._output_validators: dict[tuple[str, int], Draft202012Validator] = {}
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
        """Record a new PENDING task; refuse unknown definitions and invalid input.

        With an idempotency key, a retry returns the original task (``replayed``).
        """
        result = self.submit_many([cmd])[0]
        if isinstance(result, CommandError):
            raise result
        return result

    def submit_many(self, cmds: Sequence[SubmitTask]) -> list[Outcome | CommandError]:
        """Record every acceptable task in ONE transaction; one result per command, in order.

        A refused command gets its error and records nothing; the others are saved
        together. A command with an idempotency key whose task exists already gets that
        task (``replayed``) if the request is the same, else a ValidationFailed. A lost
        race with a concurrent duplicate (IntegrityError) is retried, and the retry finds
        the winner's task.
        """
        results: list[Outcome | CommandError | None] = [None] * len(cmds)
        plan: dict[int, tuple[UUID, str | None]] = {}  # index -> (task id, request hash)
        repeats: dict[int, int] = {}  # index -> earlier index with the same key and body
        first: dict[UUID, int] = {}
        for index, cmd in enumerate(cmds):
            key = cmd.idempotency_key
            if key is None:
                plan[index] = (self._new_id(), None)
                continue
            if not idempotency.valid_key(key):
                results[index] = ValidationFailed(
                    "Idempotency-Key must be 1 to 255 visible ASCII characters",
                    {"field": "Idempotency-Key"},
                )
                continue
            keyed_id, fingerprint = idempotency.task_id_for(cmd, key), idempotency.fingerprint(cmd)
            earlier = first.setdefault(keyed_id, index)
            if earlier == index:
                plan[index] = (keyed_id, fingerprint)
            elif plan[earlier][1] == fingerprint:
                repeats[index] = earlier
            else:
                results[index] = _key_reused(keyed_id)
        for attempt in range(3):
            tasks: dict[int, Task] = {}
            for index, (task_id, request_hash) in plan.items():
                if results[index] is not None:
                    continue
                if request_hash is not None:
                    existing = self._find(task_id)
                    if existing is not None:
                        results[index] = self._replay(existing, request_hash)
                        continue
                try:
                    tasks[index] = self._new_task(cmds[index], task_id, request_hash)
                except CommandError as exc:
                    results[index] = exc
            if not tasks:
                break
            try:
                recordings = self.save(*tasks.values())
            except IntegrityError:
                # A concurrent duplicate won: the next round finds it. Nothing else can
                # clash with fresh ids, so give up if no keyed command is involved.
                if attempt == 2 or all(plan[index][1] is None for index in tasks):
                    raise
                continue
            positions = {r.domain_event.originator_id: r.notification.id for r in recordings}
            for index, task in tasks.items():
                results[index] = Outcome(
                    task_id=task.id,
                    status=task.status.value,
                    created_at=task.created_at,
                    updated_at=task.updated_at,
                    position=positions[task.id],
                )
            break
        for index, earlier in repeats.items():
            original = results[earlier]
            results[index] = (
                replace(original, replayed=True) if isinstance(original, Outcome) else original
            )
        assert all(result is not None for result in results)
        return [result for result in results if result is not None]

    def _find(self, task_id: UUID) -> Task | None:
        try:
            task: Any = self.repository.get(task_id)
        except AggregateNotFoundError:
            return None
        return task if isinstance(task, Task) else None

    def _replay(self, task: Task, request_hash: str) -> Outcome | CommandError:
        if task.request_hash != request_hash:
            return _key_reused(task.id)
        # The task's events are committed, so the log's end is at or past them.
        position = self.recorder.max_notification_id() or 0
        return Outcome(
            task_id=task.id,
            status=task.status.value,
            created_at=task.created_at,
            updated_at=task.updated_at,
            position=position,
            replayed=True,
        )

    def _new_task(self, cmd: SubmitTask, task_id: UUID, request_hash: str | None) -> Task:
        """A new task for ``cmd`` (not saved); NotFound or ValidationFailed if refused."""
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
                    "violations": as_details(violations),
                },
            )
        return Task.submit(
            task_id=task_id,
            at=self._clock(),
            actor=cmd.actor,
            definition=definition,
            input=cmd.input,
            workflow_instance_id=cmd.workflow_instance_id,
            priority=cmd.priority,
            timeout_ms=cmd.timeout_ms,
            retry_policy=cmd.retry_policy,
            definition_revision=self.catalog.revision(definition.id),
            request_hash=request_hash,
        )

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

    def finish_manually(self, cmd: FinishManually) -> Outcome:
        """Complete (with a validated output) or fail a MANUAL task by hand."""
        task = self.load(cmd.task_id)
        at = self._clock()
        try:
            if cmd.error_type is None:
                task.complete_manually(output=cmd.output, at=at, actor=cmd.actor)
            else:
                task.fail_manually(
                    error_type=cmd.error_type,
                    error_message=cmd.error_message,
                    at=at,
                    actor=cmd.actor,
                )
        except IllegalTransition as exc:
            raise Conflict(str(exc), {"status": exc.status}) from None
        if cmd.error_type is None and (violations := self.output_violations(task, cmd.output)):
            # Refused before saving: the changed aggregate is dropped, nothing is recorded.
            raise ValidationFailed(
                "output does not match the task definition's outputSchema",
                {"field": "output", "violations": as_details(violations)},
            )
        return self._outcome(task, self.save(task))

    def expire_attempt(self, task_id: UUID, attempt: int, reason: str) -> bool:
        """No report came back from a started attempt in time: count it as a failure
        (``WORKER_LOST``, retried per policy). False if the task moved on meanwhile."""
        task = self.load(task_id)
        try:
            task.fail(
                attempt=attempt,
                error_type=WORKER_LOST,
                error_message=reason,
                at=self._clock(),
                actor=SYSTEM,
            )
        except StaleResult:
            return False
        try:
            self.save(task)
        except IntegrityError:  # a report arrived at the same moment: it wins
            return False
        return True

    def output_violations(self, task: Task, output: Any) -> list[Violation]:
        """Check ``output`` against the outputSchema of the definition revision the task
        was submitted against."""
        key = (task.definition_id, task.definition_revision)
        validator = self._output_validators.get(key)
        if validator is None:
            validator = self._output_validator(*key)
            self._output_validators[key] = validator
        return schema_violations(validator, output)

    def _output_validator(self, definition_id: str, revision: int) -> Draft202012Validator:
        if revision:
            try:
                record: Any = self.repository.get(
                    definition_record_id(definition_id), version=revision
                )
                return Draft202012Validator(record.document.get("outputSchema") or {})
            except AggregateNotFoundError:
                pass
        definition = self.catalog.get(definition_id)
        return Draft202012Validator(definition.output_schema if definition else {})

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
                apply_report(task, report, self.output_violations)
            except StaleResult as exc:
                log.info("stale report discarded: %s", exc)
        events: list[Any] = [event for task in tasks.values() for event in task.collect_events()]
        self.events.put(events, tracking=Tracking(RESULTS_TRACKING, position))
        return len(events)

    def register_definitions(self, definitions: Sequence[TaskDefinition]) -> dict[str, int]:
        """Record new and changed definitions in one transaction; unchanged ones record
        nothing. Returns every definition's revision (the store's version of its record).

        Several replicas may start at once: a lost race (IntegrityError) is retried, and
        the retry finds the winner's events and records nothing again.
        """
        for attempt in range(3):
            at = self._clock()
            changed: list[DefinitionRecord] = []
            revisions: dict[str, int] = {}
            for definition in definitions:
                document = definition.to_document()
                try:
                    record: Any = self.repository.get(definition_record_id(definition.id))
                except AggregateNotFoundError:
                    record = DefinitionRecord.register(
                        definition_id=definition.id, document=document, at=at, actor=SYSTEM
                    )
                    changed.append(record)
                else:
                    if record.revise(document=document, at=at, actor=SYSTEM):
                        changed.append(record)
                revisions[definition.id] = record.revision
            try:
                if changed:
                    self.save(*changed)
            except IntegrityError:
                if attempt == 2:
                    raise
                continue
            return revisions
        raise AssertionError("unreachable")

    def read_log(self, after: int, limit: int) -> list[tuple[int, Any]]:
        """Decoded events of the notification log after position ``after``, in order.

        Decoded as the library decodes them, without its per-event overhead (see
        commands/log_reader.py: this is most of the cost of a projection catch-up)."""
        from commands.log_reader import LogReader  # imported here to keep this change local

        reader: LogReader | None = getattr(self, "_log_reader", None)
        if reader is None:
            reader = self._log_reader = LogReader(self.recorder, self.mapper, UndecodableEvent)
        return reader.read(after, limit)

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


def _key_reused(task_id: UUID) -> ValidationFailed:
    return ValidationFailed(
        "Idempotency-Key was already used with a different request",
        {"field": "Idempotency-Key", "taskId": str(task_id)},
    )
