"""TaskService: the write side. Every change is an appended event.

eventsourcing is synchronous: call these methods from worker threads, never from
the event loop. Each method reads as load -> act -> save.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import (
    EventStore,
    IntegrityError,
    ProcessRecorder,
    Recording,
    Transcoder,
)

from commands import canonical
from commands.batch import BatchCommand, cancel_task, decide, ids_to_load
from commands.catalog import DefinitionCatalog, SchemaValidator, Violation, as_details
from commands.errors import CommandError, Conflict, NotFound, TooLarge, ValidationFailed
from commands.event_loading import select_events_many
from commands.ids import RandomIds
from commands.log_reader import LogReader
from commands.messages import CancelTask, FinishManually, Outcome, RecordReport, SubmitTask
from commands.persistence import APPLICATION_NAME
from commands.recent import RecentEvents, RememberingEventStore
from commands.reports import apply_reports
from commands.task_cache import TaskCache
from commands.transcoder import PayloadSafeTranscoder
from domain import apikey as _apikey  # noqa: F401  (registers the API-key topics for decoding)
from domain.definition import TaskDefinition
from domain.definition_record import DefinitionRecord, definition_record_id
from domain.errors import IllegalTransition, StaleResult
from domain.task import WORKER_LOST, Task
from domain.values import SYSTEM

log = logging.getLogger(__name__)
_json = msgspec.json.Encoder()


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
        new_id: Callable[[], UUID] | None = None,
    ) -> None:
        super().__init__(env)
        canonical.install()  # new events' hashes: msgspec where it writes the same bytes
        self._log_reader = LogReader(self.recorder, self.mapper, UndecodableEvent)
        self.catalog = catalog
        self._output_validators: dict[tuple[str, int], SchemaValidator] = {}
        self._clock = clock
        self._new_id = new_id or RandomIds()
        self.task_cache = TaskCache()
        # The largest input accepted (its JSON): set from the broker's message limit.
        self.max_input_bytes: int | None = None

    def construct_transcoder(self) -> Transcoder:
        return PayloadSafeTranscoder()

    def construct_event_store(self) -> EventStore[UUID]:
        # What this process records stays in memory a while for its own log readers.
        self.recent = RecentEvents()
        return RememberingEventStore(self.mapper, self.recorder, self.recent)

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
        return _one(self.execute([cmd]))

    def cancel(self, cmd: CancelTask) -> Outcome:
        """Cancel a task that has not finished; 409-style Conflict when it has."""
        return _one(self.execute([cmd]))

    def submit_many(self, cmds: Sequence[SubmitTask]) -> list[Outcome | CommandError]:
        """Record every acceptable task in ONE transaction; one result per command, in order.

        A refused command gets its error and records nothing; the others are saved
        together, all or none. A keyed command that lost a race with a concurrent
        duplicate (IntegrityError) makes the whole batch run again, and the retry finds
        the winner's task; anything else that goes wrong is raised.
        """
        results = self.execute(cmds, atomic=True)
        for result in results:
            if not isinstance(result, Outcome | CommandError):
                raise result
        return [result for result in results if isinstance(result, Outcome | CommandError)]

    def execute(
        self, cmds: Sequence[BatchCommand], atomic: bool = False
    ) -> list[Outcome | Exception]:
        """Group commit: submits and cancels decided together and saved in ONE transaction;
        one result per command, in order (an Outcome, or the error for that command alone).

        A keyed submit with an existing task gets that task (``replayed``) if the request
        is the same, else ValidationFailed. When the save itself fails (a concurrent
        duplicate key, a task that changed meanwhile: IntegrityError) nothing is recorded;
        then each command runs again on its own, so that only the one that clashed is
        affected, and alone a clash is retried on fresh state (which finds the winner's
        task, or the task's new status). ``atomic`` (a bulk request: all or none) retries
        the whole batch instead, and only if a keyed submit may have lost a race.
        """
        for attempt in range(3):
            try:
                return self._execute_once(cmds)
            except IntegrityError:
                if len(cmds) > 1 and not atomic:
                    return [self._execute_alone(cmd) for cmd in cmds]
                if attempt == 2 or (atomic and not ids_to_load(cmds)):
                    raise
        raise AssertionError("unreachable")

    def _execute_alone(self, cmd: BatchCommand) -> Outcome | Exception:
        try:
            return self.execute([cmd])[0]
        except Exception as exc:  # this command's failure is its own answer
            return exc

    def _execute_once(self, cmds: Sequence[BatchCommand]) -> list[Outcome | Exception]:
        existing = self.load_many(ids_to_load(cmds))
        at = self._clock()
        decision = decide(
            cmds,
            existing,
            new_task=self._new_task,
            new_id=self._new_id,
            cancel=lambda task, cmd: cancel_task(task, cmd, at),
        )
        aggregates = decision.aggregates()
        positions: dict[UUID, int] = {}
        if aggregates:
            # What save() does here, without its two runtime-Protocol isinstance checks
            # per aggregate (tens of microseconds each on Python 3.11): no snapshots, no
            # cache, no notify hooks are configured.
            events = [event for task in aggregates for event in task.collect_events()]
            for recording in self._put(aggregates, events):
                positions[recording.domain_event.originator_id] = recording.notification.id
        results: dict[int, Outcome | Exception] = dict(decision.answers)
        for index, task in decision.changed.items():
            results[index] = _outcome(task, positions[task.id])
        if decision.replays:
            # Their events are committed, so the log's end is at or past them.
            head = self.recorder.max_notification_id() or 0
            for index, task in decision.replays.items():
                results[index] = replace(_outcome(task, head), replayed=True)
        for index, earlier in decision.repeats.items():
            original = results[earlier]
            results[index] = (
                replace(original, replayed=True) if isinstance(original, Outcome) else original
            )
        return [results[index] for index in range(len(cmds))]

    def load_many(self, ids: Collection[UUID]) -> dict[UUID, Task]:
        """The tasks among ``ids`` that exist: kept ones from the cache (copies), the others
        read with one query (not one per task)."""
        if not ids:
            return {}
        tasks = self.task_cache.take(ids)
        missing = [task_id for task_id in ids if task_id not in tasks]
        if not missing:
            return tasks
        to_domain_event = self.mapper.to_domain_event
        for task_id, stored in select_events_many(self.recorder, missing).items():
            # What the library's project_aggregate does, without its per-event isinstance
            # check against a runtime Protocol (tens of microseconds each on Python 3.11).
            aggregate: Any = None
            for record in stored:
                event: Any = to_domain_event(record)
                aggregate = event.mutate(aggregate)
            if isinstance(aggregate, Task):
                tasks[task_id] = aggregate
        return tasks

    def _new_task(self, cmd: SubmitTask, task_id: UUID, request_hash: str | None) -> Task:
        """A new task for ``cmd`` (not saved); NotFound or ValidationFailed if refused."""
        definition = self.catalog.get(cmd.definition_id)
        if definition is None:
            raise NotFound(
                f"task definition '{cmd.definition_id}' not found",
                {"field": "taskDefinitionId", "value": cmd.definition_id},
            )
        if self.max_input_bytes is not None:
            # The input travels in the task's messages, with its workflow instance id.
            size = len(_json.encode(cmd.input)) + len(cmd.workflow_instance_id or "")
            if size > self.max_input_bytes:
                raise TooLarge(
                    f"input is {size} bytes as JSON; at most {self.max_input_bytes} are accepted",
                    {"field": "input", "size": size, "limit": self.max_input_bytes},
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
        return _outcome(task, self.save(task)[-1].notification.id)

    def give_up(self, task_id: UUID, attempt: int, error_type: str, reason: str) -> bool:
        """``attempt``'s work can never be done: the task ends FAILED with ``error_type``
        if it still waits on that attempt. False if it moved on (or is unknown)."""
        for _ in range(3):
            try:
                task = self.load(task_id)
                task.give_up(
                    attempt=attempt,
                    error_type=error_type,
                    error_message=reason,
                    at=self._clock(),
                    actor=SYSTEM,
                )
            except (NotFound, StaleResult):
                return False
            try:
                self.save(task)
            except IntegrityError:  # a report came meanwhile: judge again
                continue
            return True
        raise RuntimeError(f"task {task_id} kept changing; not given up")

    def awaits_start(self, task_id: UUID, attempt: int) -> bool:
        """Does the task still wait for ``attempt`` to start?"""
        try:
            return self.load(task_id).awaits_start(attempt)
        except NotFound:
            return False

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
        return validator.violations(output)

    def _output_validator(self, definition_id: str, revision: int) -> SchemaValidator:
        if revision:
            try:
                record: Any = self.repository.get(
                    definition_record_id(definition_id), version=revision
                )
                return SchemaValidator(record.document.get("outputSchema") or {})
            except AggregateNotFoundError:
                pass
        definition = self.catalog.get(definition_id)
        return SchemaValidator(definition.output_schema if definition else {})

    def record_reports(self, reports: Sequence[RecordReport]) -> int:
        """Apply a batch of worker reports in one transaction; the number of events recorded.

        Idempotent by each report's identity (task, attempt, kind) against the task's
        state, never by a stream position: JetStream redelivers out of order, and several
        replicas consume at once. A repeat or a late report (after a cancel, say) changes
        nothing and is logged with the reason. IntegrityError: a task changed meanwhile
        (another replica recorded it); the caller tries again on fresh state.
        """
        ids = {report.task_id for report in reports}
        tasks = self.load_many(ids)
        stale = apply_reports(tasks, reports, self.output_violations)
        if stale:
            # A kept copy may be behind what another replica recorded since: judge those
            # reports again on the store's state before discarding any of them.
            self.task_cache.forget(ids)
            tasks = self.load_many(ids)
            stale = apply_reports(tasks, reports, self.output_violations)
        for reason in stale:
            log.info("stale report discarded: %s", reason)
        events: list[Any] = [event for task in tasks.values() for event in task.collect_events()]
        if events:
            self._put(list(tasks.values()), events)
        return len(events)

    def _put(self, tasks: Sequence[Task], events: list[Any], **kwargs: Any) -> list[Any]:
        """Record ``events`` (of ``tasks``, collected); keep the tasks in the cache if the
        store took them. A refusal may come from a stale kept task: the cache pauses."""
        try:
            recordings = self.events.put(events, **kwargs)
        except IntegrityError:
            self.task_cache.refused()
            raise
        except BaseException:
            self.task_cache.forget(task.id for task in tasks)
            raise
        self.task_cache.remember(tasks)
        return recordings

    def save(self, *objs: Any, **kwargs: Any) -> list[Recording[UUID]]:
        """The library's save; a task saved this way is no longer kept in the cache."""
        self.task_cache.forget(obj.id for obj in objs if isinstance(obj, Task))
        return super().save(*objs, **kwargs)

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
        return self._log_reader.read(after, limit)

    def follow_log(self, after: int, limit: int) -> list[tuple[int, Any]]:
        """For readers that follow the log's head (the relay, the live projection): what
        ``read_log`` returns, or a shorter start of it, taken from memory when this
        process recorded those events itself (commands/recent.py). Empty only when
        ``read_log`` is; a reader calls again from where the page ended."""
        recent = self.recent.after(after, limit)
        if recent is not None:
            return recent
        return self._log_reader.read(after, limit)

    def load(self, task_id: UUID) -> Task:
        try:
            task: Any = self.repository.get(task_id)
        except AggregateNotFoundError:
            raise NotFound(f"task {task_id} not found", {"field": "taskId"}) from None
        assert isinstance(task, Task)
        return task


def _outcome(task: Task, position: int) -> Outcome:
    return Outcome(
        task_id=task.id,
        status=task.status.value,
        created_at=task.created_at,
        updated_at=task.updated_at,
        position=position,
    )


def _one(results: list[Outcome | Exception]) -> Outcome:
    (result,) = results
    if isinstance(result, Exception):
        raise result
    return result
