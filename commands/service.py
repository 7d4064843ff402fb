"""TaskService: the write side. Every change is an appended event.

eventsourcing is synchronous: call these methods from worker threads, never from the
event loop. Each method reads as load -> act -> save. Here: the commands, the group
commit that saves them, and saving tasks. Beside it: what a submit must pass
(commands/submission.py), a batch's decisions (commands/batch.py), reports
(commands/reports.py), one task changed by hand or by the system
(commands/task_changes.py), reading tasks back (commands/task_reads.py), the
definitions' history and output schemas (commands/definition_records.py), the log
(commands/log_reader.py), read by commands/event_reader.py and decoded by
commands/event_decoder.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from typing import Any
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.persistence import (
    EventStore,
    IntegrityError,
    ProcessRecorder,
    Recording,
    Transcoder,
)

from commands import canonical, task_changes
from commands.batch import BatchCommand, change_task, decide, ids_to_load
from commands.catalog import DefinitionCatalog, Violation
from commands.definition_records import OutputSchemas, register_definitions
from commands.errors import CommandError, NotFound
from commands.event_decoder import EventDecoder, UndecodableEvent
from commands.event_reader import EventReader
from commands.fast_paths import FastPaths
from commands.ids import RandomIds
from commands.log_reader import LogReader
from commands.messages import CancelTask, FinishManually, Outcome, RecordReport, SubmitTask
from commands.persistence import APPLICATION_NAME
from commands.recent import RecentEvents, RememberingEventStore
from commands.reports import apply_reports
from commands.submission import new_task
from commands.task_cache import TaskCache
from commands.task_changes import outcome
from commands.task_reads import load_task, load_tasks
from commands.transcoder import PayloadSafeTranscoder
from domain import apikey as _apikey  # noqa: F401  (registers the API-key topics for decoding)
from domain.definition import TaskDefinition
from domain.task import Task

__all__ = ["TaskService", "UndecodableEvent", "utcnow"]

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


class TaskService(Application[UUID]):
    """Submit, cancel, and record what workers report, as events in one store."""

    name = APPLICATION_NAME
    recent: RecentEvents | None  # None: the recent-events fast path is off

    def __init__(
        self,
        env: dict[str, str],
        catalog: DefinitionCatalog,
        clock: Callable[[], datetime] = utcnow,
        new_id: Callable[[], UUID] | None = None,
    ) -> None:
        # The shortcuts to take: from ``env`` as given (the library merges in os.environ).
        self.fast_paths = FastPaths.from_eventsourcing_env(env)
        super().__init__(env)
        canonical.install()  # new events' hashes: msgspec where it writes the same bytes
        # One reader and one decoder of the store, for every read beside the repository.
        self.event_reader = EventReader(self.recorder)
        self.event_decoder = EventDecoder(self.mapper)
        self._log_reader = LogReader(self.event_reader, self.event_decoder, self.mapper)
        self.catalog = catalog
        self._output_schemas = OutputSchemas(self.repository, catalog)
        self._clock = clock
        self._new_id = new_id or RandomIds()
        self.task_cache = TaskCache(enabled=self.fast_paths.task_cache)
        # The largest input accepted (its JSON): set from the broker's message limit.
        self.max_input_bytes: int | None = None

    def construct_transcoder(self) -> Transcoder:
        return PayloadSafeTranscoder()

    def construct_event_store(self) -> EventStore[UUID]:
        # What this process records stays in memory a while for its own log readers.
        if not self.fast_paths.recent_events:
            self.recent = None
            return super().construct_event_store()
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
        """Record a new PENDING task; refuse unknown definitions and invalid input. With an
        idempotency key, a retry returns the original task (``replayed``)."""
        return _one(self.execute([cmd]))

    def cancel(self, cmd: CancelTask) -> Outcome:
        """Cancel a task that has not finished; 409-style Conflict when it has."""
        return _one(self.execute([cmd]))

    def submit_many(self, cmds: Sequence[SubmitTask]) -> list[Outcome | CommandError]:
        """Record every acceptable task in ONE transaction (all or none); one result per
        command, in order: a refused command gets its error. A keyed command that lost a
        race (IntegrityError) makes the batch run again; anything else is raised."""
        results = self.execute(cmds, atomic=True)
        for result in results:
            if not isinstance(result, Outcome | CommandError):
                raise result
        return [result for result in results if isinstance(result, Outcome | CommandError)]

    def execute(
        self, cmds: Sequence[BatchCommand], atomic: bool = False
    ) -> list[Outcome | Exception]:
        """Group commit: submits, cancels and requeues decided together (commands/batch.py),
        saved in ONE transaction; one result per command, in order (an Outcome or its error).

        When the save fails (IntegrityError: a concurrent duplicate key, a task changed
        meanwhile) nothing is recorded and each command runs again alone, on fresh state,
        so only the one that clashed is affected. ``atomic`` (all or none) retries the
        whole batch instead, and only if a keyed submit may have lost a race."""
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
        change = partial(change_task, at=at)
        decision = decide(cmds, existing, self._new_task, self._new_id, change)
        aggregates = decision.aggregates()
        positions: dict[UUID, int] = {}
        if aggregates:
            # What save() does here, without its runtime-Protocol isinstance checks per
            # aggregate (docs/benchmarks.md): no snapshots, cache or notify hooks are set.
            events = [event for task in aggregates for event in task.collect_events()]
            for recording in self._put(aggregates, events):
                positions[recording.domain_event.originator_id] = recording.notification.id
        results: dict[int, Outcome | Exception] = dict(decision.answers)
        for index, task in decision.changed.items():
            results[index] = outcome(task, positions[task.id])
        if decision.replays:
            # Their events are committed, so the log's end is at or past them.
            head = self.recorder.max_notification_id() or 0
            for index, task in decision.replays.items():
                results[index] = replace(outcome(task, head), replayed=True)
        for index, earlier in decision.repeats.items():
            original = results[earlier]
            results[index] = (
                replace(original, replayed=True) if isinstance(original, Outcome) else original
            )
        return [results[index] for index in range(len(cmds))]

    def load_many(self, ids: Collection[UUID]) -> dict[UUID, Task]:
        """The tasks among ``ids`` that exist, kept or read at once (commands/task_reads.py)."""
        return load_tasks(self.task_cache, self.event_reader, self.event_decoder, ids)

    def _new_task(self, cmd: SubmitTask, task_id: UUID, request_hash: str | None) -> Task:
        """A new task for ``cmd`` (not saved); refused: commands/submission.py."""
        return new_task(self.catalog, cmd, task_id, request_hash, self._clock, self.max_input_bytes)

    def finish_manually(self, cmd: FinishManually) -> Outcome:
        """Complete (with a validated output) or fail a MANUAL task by hand."""
        return task_changes.finish_manually(self, cmd, self._clock, self.output_violations)

    def give_up(self, task_id: UUID, attempt: int, error_type: str, reason: str) -> bool:
        """``attempt``'s work can never be done: the task ends FAILED with ``error_type``
        if it still waits on that attempt. False if it moved on (or is unknown)."""
        return task_changes.give_up(self, task_id, attempt, error_type, reason, self._clock)

    def awaits_start(self, task_id: UUID, attempt: int) -> bool:
        """Does the task still wait for ``attempt`` to start?"""
        try:
            return self.load(task_id).awaits_start(attempt)
        except NotFound:
            return False

    def expire_attempt(self, task_id: UUID, attempt: int, reason: str) -> bool:
        """No report came back from a started attempt in time: count it as a failure
        (``WORKER_LOST``, retried per policy). False if the task moved on meanwhile."""
        return task_changes.expire_attempt(self, task_id, attempt, reason, self._clock)

    def output_violations(self, task: Task, output: Any) -> list[Violation]:
        """Check ``output`` against the outputSchema of the definition revision the task
        was submitted against."""
        return self._output_schemas.violations(task, output)

    def record_reports(self, reports: Sequence[RecordReport]) -> int:
        """Apply a batch of worker reports in one transaction; the number of events recorded.

        Idempotent by each report's identity (task, attempt, kind) against the task's state,
        never by a stream position: JetStream redelivers out of order, and replicas consume
        at once. A repeat or a late report changes nothing (logged). IntegrityError: a task
        changed meanwhile (another replica); the caller tries again on fresh state."""
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
        """Record new and changed definitions in one transaction; every definition's
        revision (commands/definition_records.py)."""
        return register_definitions(self.repository, self.save, definitions, self._clock)

    def read_log(self, after: int, limit: int) -> list[tuple[int, Any]]:
        """Decoded events of the notification log after position ``after``, in order,
        as the library decodes them (commands/log_reader.py)."""
        return self._log_reader.read(after, limit)

    def follow_log(
        self, after: int, limit: int, reader: str | None = None
    ) -> list[tuple[int, Any]]:
        """For readers that follow the log's head (the relay, the live projection): what
        ``read_log`` returns, or a shorter start of it, taken from memory when this
        process recorded those events itself (commands/recent.py). Empty only when
        ``read_log`` is; a reader calls again from where the page ended. A ``reader``
        that names itself lets the memory drop what it has read."""
        recent = self.recent.after(after, limit, reader) if self.recent is not None else None
        if recent is not None:
            return recent
        return self._log_reader.read(after, limit)

    def load(self, task_id: UUID) -> Task:
        """The task ``task_id``; NotFound if there is none."""
        return load_task(self.repository, task_id)


def _one(results: list[Outcome | Exception]) -> Outcome:
    (result,) = results
    if isinstance(result, Exception):
        raise result
    return result
