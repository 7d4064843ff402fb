"""``taskexec verify``: check every hash chain, replay every aggregate, compare with the
read models.

The store is read aggregate by aggregate (``EventStoreReader.by_aggregate``: id, then
version, in batches), so one aggregate is complete when the next one starts and memory
stays bounded whatever the store's size. For each batch of complete aggregates:

1. every chain is checked (``check_chain``, projections/audit/chain_check.py): versions
   1, 2, … with no gap, each hash recomputed from the stored content, each ``prev_hash`` linked;
2. the read-model rows of the batch's tasks and definitions are read together with the
   read model's position ``P``, in one snapshot;
3. each aggregate is replayed from its events up to ``P`` and compared with its row.
   Events after ``P`` are not in the read model yet, so a live service never shows a
   false difference; a difference is read again (row first, then events) before it is
   reported, in case the service wrote in between.

Before the scan, the per-(status, type) counts and the number of rows are read at one
position ``P0``; at the end they are compared with the replayed state at ``P0``. That
catches rows the store knows nothing about (inserted or left behind) and counters that
drifted from the rows.
"""

from __future__ import annotations

import json
import multiprocessing
import queue
import sqlite3
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any
from uuid import UUID

import psycopg

from commands.catalog import DefinitionCatalog
from commands.gc_pause import gc_paused
from commands.persistence import DatabaseConfig, prepare_database
from commands.public_events import aggregate_kind, topic_parts
from commands.service import TaskService
from domain.apikey import ApiKey
from domain.definition_record import DefinitionRecord
from domain.task import Task
from projections.audit.chain_check import ChainLink, check_chain
from projections.audit.event_reader import EventDecoder, EventStoreReader, StoredRecord
from projections.db import Cursor, Database
from projections.queries import Generation
from projections.schema import read_position
from projections.stranded import stranded
from projections.task_rows import free_text
from projections.tasks import json_text, timestamp_text

Progress = Callable[[int, int], None]

# Read-model column -> the Task attribute it must equal (enums by value, datetimes as
# read-model text); a column or attribute that one side lacks is not compared.
TASK_COLUMNS: dict[str, str] = {
    "definition_id": "definition_id",
    "definition_version": "definition_version",
    "definition_revision": "definition_revision",
    "workflow_instance_id": "workflow_instance_id",
    "timeout_ms": "timeout_ms",
    "status": "status",
    "type": "task_type",
    "priority": "priority",
    "input": "input",
    "output": "output",
    "error": "error",
    "attempts": "attempt",
    "start_time": "started_at",
    "end_time": "ended_at",
    "execution_environment": "worker",
    "cancel_reason": "cancel_reason",
    "next_attempt_at": "next_attempt_at",
    "created_at": "created_on",
    "updated_at": "modified_on",
    "version": "version",
}
_ABSENT = object()
STRANDED_AFTER_S = 15 * 60.0  # a PENDING or RUNNING task unchanged this long is a finding
JSON_COLUMNS = frozenset({"input", "output", "error"})
DEFINITION_COLUMNS = (
    "name",
    "description",
    "type",
    "version",
    "revision",
    "document",
    "created_at",
    "updated_at",
)


@dataclass(frozen=True)
class Problem:
    """One finding: which aggregate, which event version, what is wrong."""

    kind: str  # task | definition | apikey | unknown
    aggregate: str  # the task id, definition id or key id
    version: int | None
    message: str

    def __str__(self) -> str:
        where = f" version {self.version}" if self.version is not None else ""
        return f"{self.kind} {self.aggregate}{where}: {self.message}"


@dataclass
class VerifyReport:
    events: int = 0
    aggregates: Counter[str] = field(default_factory=Counter)
    problems: list[Problem] = field(default_factory=list)
    problem_count: int = 0
    read_model_position: int = 0
    head: int = 0
    compared: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    def summary(self) -> str:
        kinds = ", ".join(f"{n:,} {kind}s" for kind, n in sorted(self.aggregates.items()))
        compared = ", ".join(f"{n:,} {kind}s" for kind, n in sorted(self.compared.items()))
        if self.ok:
            return (
                f"OK: {self.events:,} events of {sum(self.aggregates.values()):,} aggregates "
                f"({kinds or 'none'}): every hash chain intact; read model matches the "
                f"replay ({compared or 'nothing'} compared, read model at position "
                f"{self.read_model_position:,} of {self.head:,})"
            )
        return (
            f"FAILED: {self.problem_count:,} problem(s) in {self.events:,} events of "
            f"{sum(self.aggregates.values()):,} aggregates ({kinds or 'none'})"
        )


@dataclass
class _Aggregate:
    """One aggregate of a batch: its rows, decoded states and domain events."""

    originator_id: UUID
    records: list[StoredRecord]
    states: list[dict[str, Any] | None]
    events: list[Any]  # None where the state did not decode
    kind: str = "unknown"
    label: str = ""
    broken: bool = False  # a gap or undecodable event: replay cannot be trusted


class ReadModelMissing(RuntimeError):
    """The read-model tables do not exist (no ``serve`` or rebuild has run yet)."""


@dataclass
class ShardResult:
    """What one process found in its slice of the aggregates (picklable)."""

    events: int
    aggregates: Counter[str]
    problem_count: int
    compared: Counter[str]
    counts_at_p0: Counter[tuple[str, str]]
    definitions_at_p0: int
    unreplayed: Counter[str]


def shard_bounds(index: int, count: int) -> tuple[UUID | None, UUID | None]:
    """The aggregate ids ``[low, high)`` of shard ``index`` of ``count`` (ids are uniform:
    random for tasks, uuid5 for definitions and keys)."""
    low = UUID(int=index * 2**128 // count) if index else None
    high = UUID(int=(index + 1) * 2**128 // count) if index + 1 < count else None
    return low, high


class Verifier:
    """One verification over ``service``'s store and the read models in ``db``.

    ``run()`` does everything in this process. For several processes, the coordinator
    calls ``baseline()``, each process ``scan()``s a shard and returns its ``result()``,
    and the coordinator ``merge()``s them and calls ``finish()`` (see ``verify``).
    """

    def __init__(
        self,
        service: TaskService,
        db: Database,
        batch: int = 5000,
        max_problems: int = 1000,
        progress: Progress = lambda done, total: None,
        on_problem: Callable[[Problem], None] = lambda problem: None,
        stranded_after_s: float | None = STRANDED_AFTER_S,
    ) -> None:
        self._stranded_after_s = stranded_after_s  # None: no stranded-task findings
        self._reader = EventStoreReader(service)
        self._decoder = EventDecoder(service)
        self._generation = Generation(db)
        self._db = db
        self._batch = batch
        self._max_problems = max_problems
        self._progress = progress
        self._on_problem = on_problem
        self.report = VerifyReport()
        self._p0 = 0
        self._counts_at_p0: Counter[tuple[str, str]] = Counter()
        self._definitions_at_p0 = 0
        self._unreplayed: Counter[str] = Counter()  # aggregates whose chain is broken

    def run(self) -> VerifyReport:
        baseline = self.baseline()
        self.scan(total=self.total())
        self.finish(baseline)
        return self.report

    def total(self) -> int:
        """How many events the store holds (for progress)."""
        return self._reader.count()

    def baseline(self) -> Baseline:
        """Read the read model's counts and position P0 (one snapshot) and the head."""
        self.report.head = self._reader.head()
        try:
            baseline = self._generation.query(_baseline)
        except (sqlite3.OperationalError, psycopg.errors.UndefinedTable) as exc:
            if "no such table" not in str(exc) and not isinstance(exc, psycopg.Error):
                raise
            raise ReadModelMissing(
                "the read models do not exist yet: start `taskexec serve` (or run "
                "`taskexec projections rebuild`) first"
            ) from exc
        self.start_at(baseline.position)
        return baseline

    def start_at(self, position: int) -> None:
        """Compare counts as they stood at ``position`` (the baseline's P0)."""
        self._p0 = position
        self.report.read_model_position = position

    def scan(self, low: UUID | None = None, high: UUID | None = None, total: int = 0) -> None:
        """Verify every aggregate with ``low <= id < high``."""
        report = self.report
        with gc_paused():
            pending: list[StoredRecord] = []
            for batch in self._reader.by_aggregate(self._batch, low, high):
                records = pending + batch
                cut = len(records) - 1
                while cut > 0 and records[cut - 1].originator_id == records[-1].originator_id:
                    cut -= 1
                complete, pending = records[:cut], records[cut:]
                if complete:
                    self._verify(complete)
                self._progress(report.events, total)
            if pending:
                self._verify(pending)
        self._progress(report.events, max(total, report.events))

    def result(self) -> ShardResult:
        return ShardResult(
            events=self.report.events,
            aggregates=self.report.aggregates,
            problem_count=self.report.problem_count,
            compared=self.report.compared,
            counts_at_p0=self._counts_at_p0,
            definitions_at_p0=self._definitions_at_p0,
            unreplayed=self._unreplayed,
        )

    def merge(self, result: ShardResult) -> None:
        """Add a shard's totals (its problems were shown with ``show`` as they came)."""
        self.report.events += result.events
        self.report.aggregates.update(result.aggregates)
        self.report.problem_count += result.problem_count
        self.report.compared.update(result.compared)
        self._counts_at_p0.update(result.counts_at_p0)
        self._definitions_at_p0 += result.definitions_at_p0
        self._unreplayed.update(result.unreplayed)

    def show(self, problem: Problem) -> None:
        """A problem another process counted already: list it, do not count it again."""
        if len(self.report.problems) < self._max_problems:
            self.report.problems.append(problem)
            self._on_problem(problem)

    def finish(self, baseline: Baseline) -> None:
        """Compare the read model's totals at P0 with the replayed ones; find tasks that
        wait with nothing moving them on."""
        self._compare_totals(baseline)
        if self._stranded_after_s is None:
            return
        before = timestamp_text(datetime.now(UTC) - timedelta(seconds=self._stranded_after_s))
        limit = self._max_problems
        for task_id, status, _, since in self._generation.query(
            lambda cur, g: stranded(cur, g, before, limit, running=True)
        ):
            waiting = "its work" if status == "PENDING" else "its attempt's end"
            message = f"{status} since {since}: waited for {waiting} longer than the bound"
            self._add(Problem("task", task_id, None, f"{message} (stranded)"))

    # -- one batch of complete aggregates ------------------------------------------------

    def _verify(self, records: list[StoredRecord]) -> None:
        aggregates = [self._check(group) for group in _by_aggregate(records)]
        self.report.events += len(records)
        tasks = [a for a in aggregates if a.kind == "task" and not a.broken]
        definitions = [a for a in aggregates if a.kind == "definition" and not a.broken]
        if tasks:
            position, rows = self._generation.query(
                lambda cur, g: _task_rows(cur, g, [str(a.originator_id) for a in tasks])
            )
            for aggregate in tasks:
                self._compare_task(aggregate, position, rows.get(str(aggregate.originator_id)))
        if definitions:
            position, rows = self._generation.query(
                lambda cur, g: _definition_rows(cur, g, [a.label for a in definitions])
            )
            for aggregate in definitions:
                self._compare_definition(aggregate, position, rows.get(aggregate.label))

    def _check(self, records: list[StoredRecord]) -> _Aggregate:
        """Decode one aggregate's events and check its chain."""
        states: list[dict[str, Any] | None] = []
        events: list[Any] = []
        links: list[ChainLink] = []
        for record in records:
            try:
                state = self._decoder.state(record)
                event = self._decoder.event(record, state)
            except Exception as exc:
                states.append(None)
                events.append(None)
                links.append(ChainLink(record.version, record.topic, None, repr(exc)))
                continue
            states.append(state)
            events.append(event)
            links.append(ChainLink(record.version, record.topic, state))
        aggregate = _Aggregate(records[0].originator_id, records, states, events)
        aggregate.kind, aggregate.label = _identify(aggregate)
        self.report.aggregates[aggregate.kind] += 1
        for fault in check_chain(aggregate.originator_id, links):
            if fault.kind in ("gap", "undecodable", "missing-hash"):
                aggregate.broken = True  # not replayed: its state cannot be trusted
            self._problem(aggregate, fault.version, fault.message)
        if aggregate.broken:
            self._unreplayed[aggregate.kind] += 1
        return aggregate

    # -- replay and compare ----------------------------------------------------------------

    def _replay(
        self, aggregate: _Aggregate, position: int, mark: Callable[[Any], Any]
    ) -> tuple[Any, Any]:
        """The aggregate after its events up to ``position``, and ``mark`` of it as it
        stood at the baseline position (None if it did not exist then)."""
        state: Any = None
        at_p0: Any = None
        for record, event in zip(aggregate.records, aggregate.events, strict=True):
            if record.position > position:
                break
            state = event.mutate(state)
            if record.position <= self._p0:
                at_p0 = mark(state)
        return state, at_p0

    def _compare_task(
        self, aggregate: _Aggregate, position: int, row: dict[str, Any] | None
    ) -> None:
        try:
            task, at_p0 = self._replay(aggregate, position, _status_and_type)
        except Exception as exc:
            self._problem(aggregate, None, f"replay failed: {exc!r}")
            return
        if at_p0 is not None:
            self._counts_at_p0[at_p0] += 1
        differences = _task_differences(task, row)
        if differences:  # the service may have written since: read again, row first
            position, rows = self._generation.query(
                lambda cur, g: _task_rows(cur, g, [str(aggregate.originator_id)])
            )
            fresh = self._fresh(aggregate)
            if fresh is not None:
                task, _ = self._replay(fresh, position, _status_and_type)
                differences = _task_differences(task, rows.get(str(aggregate.originator_id)))
        if differences:
            version = task.version if task is not None else None
            self._problem(
                aggregate, version, "read model differs from the replay: " + "; ".join(differences)
            )
        self.report.compared["task"] += 1

    def _compare_definition(
        self, aggregate: _Aggregate, position: int, row: dict[str, Any] | None
    ) -> None:
        try:
            record, at_p0 = self._replay(aggregate, position, _exists)
        except Exception as exc:
            self._problem(aggregate, None, f"replay failed: {exc!r}")
            return
        if at_p0 is not None:
            self._definitions_at_p0 += 1
        differences = _definition_differences(record, row)
        if differences:
            position, rows = self._generation.query(
                lambda cur, g: _definition_rows(cur, g, [aggregate.label])
            )
            fresh = self._fresh(aggregate)
            if fresh is not None:
                record, _ = self._replay(fresh, position, _exists)
                differences = _definition_differences(record, rows.get(aggregate.label))
        if differences:
            version = record.version if record is not None else None
            self._problem(
                aggregate, version, "read model differs from the replay: " + "; ".join(differences)
            )
        self.report.compared["definition"] += 1

    def _fresh(self, aggregate: _Aggregate) -> _Aggregate | None:
        records = self._reader.aggregate(aggregate.originator_id)
        try:
            states = [self._decoder.state(r) for r in records]
            events = [self._decoder.event(r, s) for r, s in zip(records, states, strict=True)]
        except Exception:
            return None
        return _Aggregate(
            aggregate.originator_id, records, list(states), events, aggregate.kind, aggregate.label
        )

    def _compare_totals(self, baseline: Baseline) -> None:
        replayed_tasks = sum(self._counts_at_p0.values())
        if baseline.task_rows != replayed_tasks:
            extra = self._generation.query(lambda cur, g: _task_ids(cur, g))
            known = self._reader.existing([UUID(i) for i in extra])
            for task_id in extra:
                if UUID(task_id) not in known:
                    self._add(
                        Problem(
                            "task", task_id, None, "in the read model but not in the event store"
                        )
                    )
        if self._unreplayed:
            return  # totals cannot add up without the broken aggregates (reported above)
        if baseline.task_rows != replayed_tasks:
            self._add(
                Problem(
                    "read-model",
                    "task_view",
                    None,
                    f"{baseline.task_rows:,} rows at position {baseline.position:,}, "
                    f"the store has {replayed_tasks:,} tasks up to that position",
                )
            )
        for key in sorted(set(baseline.counts) | set(self._counts_at_p0)):
            if baseline.counts.get(key, 0) != self._counts_at_p0.get(key, 0):
                status, type_ = key
                self._add(
                    Problem(
                        "read-model",
                        "task_counts",
                        None,
                        f"{status}/{type_}: {baseline.counts.get(key, 0):,} counted, "
                        f"{self._counts_at_p0.get(key, 0):,} replayed",
                    )
                )
        if baseline.definition_rows != self._definitions_at_p0:
            self._add(
                Problem(
                    "read-model",
                    "definition_view",
                    None,
                    f"{baseline.definition_rows:,} rows, the store has "
                    f"{self._definitions_at_p0:,} definitions up to position {baseline.position:,}",
                )
            )

    def _problem(self, aggregate: _Aggregate, version: int | None, message: str) -> None:
        self._add(Problem(aggregate.kind, aggregate.label, version, message))

    def _add(self, problem: Problem) -> None:
        self.report.problem_count += 1
        self.show(problem)


def _status_and_type(task: Task) -> tuple[str, str]:
    return task.status.value, task.task_type.value


def _exists(_: Any) -> bool:
    return True


def _by_aggregate(records: Sequence[StoredRecord]) -> Iterable[list[StoredRecord]]:
    group: list[StoredRecord] = []
    for record in records:
        if group and record.originator_id != group[0].originator_id:
            yield group
            group = []
        group.append(record)
    if group:
        yield group


def _identify(aggregate: _Aggregate) -> tuple[str, str]:
    """(kind, the id people know it by): a task id, a definition id, a key id."""
    event = next((e for e in aggregate.events if e is not None), None)
    if event is None:
        kind = topic_parts(aggregate.records[0].topic)[0]
        return kind, str(aggregate.originator_id)
    kind = aggregate_kind(event)
    first = aggregate.events[0]
    if isinstance(first, DefinitionRecord.Registered):
        return kind, first.definition_id
    if isinstance(first, ApiKey.Created):
        return kind, first.key_id
    return kind, str(aggregate.originator_id)


# -- the read models ---------------------------------------------------------------------


@dataclass(frozen=True)
class Baseline:
    position: int
    counts: dict[tuple[str, str], int]
    task_rows: int
    definition_rows: int


def _baseline(cur: Cursor, g: int) -> Baseline:
    counts = {
        (row["status"], row["type"]): int(row["n"])
        for row in cur.execute(f"SELECT status, type, n FROM task_counts_g{g}").fetchall()
        if int(row["n"])
    }
    tasks = cur.execute(f"SELECT COUNT(*) AS n FROM task_view_g{g}").fetchone()
    definitions = cur.execute(f"SELECT COUNT(*) AS n FROM definition_view_g{g}").fetchone()
    return Baseline(
        read_position(cur, g),
        counts,
        int(tasks["n"]) if tasks else 0,
        int(definitions["n"]) if definitions else 0,
    )


def _in(cur: Cursor, column: str, ids: Sequence[str]) -> tuple[str, list[Any]]:
    if cur.postgres:
        return f"{column} = ANY(?)", [list(ids)]
    return f"{column} IN ({', '.join('?' for _ in ids)})", list(ids)


def _task_rows(cur: Cursor, g: int, ids: Sequence[str]) -> tuple[int, dict[str, dict[str, Any]]]:
    rows: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), 900):
        condition, params = _in(cur, "id", ids[start : start + 900])
        query = f"SELECT * FROM task_view_g{g} WHERE {condition}"
        for row in cur.execute(query, params).fetchall():
            rows[row["id"]] = row  # JSON columns stay text: compared as text first
    return read_position(cur, g), rows


def _definition_rows(
    cur: Cursor, g: int, ids: Sequence[str]
) -> tuple[int, dict[str, dict[str, Any]]]:
    rows: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), 900):
        condition, params = _in(cur, "id", ids[start : start + 900])
        query = f"SELECT * FROM definition_view_g{g} WHERE {condition}"
        for row in cur.execute(query, params).fetchall():
            row["document"] = json.loads(row["document"])
            rows[row["id"]] = row
    return read_position(cur, g), rows


def _task_ids(cur: Cursor, g: int) -> list[str]:
    return [row["id"] for row in cur.execute(f"SELECT id FROM task_view_g{g}").fetchall()]


def _plain(value: Any) -> Any:
    """A Task attribute as the read model holds it."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return _time_text(value)
    if isinstance(value, str):
        return free_text(value)
    return value


def _time_text(value: datetime) -> str:
    offset = value.utcoffset()
    if offset is not None and not offset:  # UTC: the projection's text, much faster
        return value.isoformat(timespec="microseconds")[:26] + "Z"
    return timestamp_text(value)


def _same_json(stored: str | None, value: Any) -> bool:
    """The projection writes the event's JSON as text: equal text is equal JSON; else
    compare the values (key order or number spelling may differ)."""
    if stored is None or value is None:
        return stored is None and value is None
    return stored == json_text(value) or json.loads(stored) == value


def _task_differences(task: Task | None, row: dict[str, Any] | None) -> list[str]:
    if task is None and row is None:
        return []
    if task is None:
        assert row is not None
        return [
            f"the read model has the task at version {row['version']}, "
            "the store has no event of it up to the read model's position"
        ]
    if row is None:
        return ["the task is missing from the read model"]
    differences = []
    for column, attribute in TASK_COLUMNS.items():
        stored = row.get(column, _ABSENT)
        value = getattr(task, attribute, _ABSENT)
        if stored is _ABSENT or value is _ABSENT:
            continue  # one side does not have it: not compared
        if column in JSON_COLUMNS:
            if not _same_json(stored, value):
                differences.append(f"{column}: read model {stored}, replay {json_text(value)}")
            continue
        expected = _plain(value)
        if stored == expected:
            continue
        if column == "version" and isinstance(stored, int) and stored > expected:
            differences.append(
                f"the read model is at version {stored}, the store has only {expected} "
                "event(s) (events deleted?)"
            )
        else:
            differences.append(f"{column}: read model {stored!r}, replay {expected!r}")
    return differences


def _definition_differences(
    record: DefinitionRecord | None, row: dict[str, Any] | None
) -> list[str]:
    if record is None and row is None:
        return []
    if record is None:
        return ["in the read model but no event up to the read model's position"]
    if row is None:
        return ["the definition is missing from the read model"]
    document = record.document
    expected = {
        "name": str(document.get("name")),
        "description": str(document.get("description", "")),
        "type": str(document.get("type")),
        "version": str(document.get("version")),
        "revision": record.version,
        "document": document,
        "created_at": timestamp_text(record.created_on),
        "updated_at": timestamp_text(record.modified_on),
    }
    return [
        f"{column}: read model {row.get(column)!r}, replay {expected[column]!r}"
        for column in DEFINITION_COLUMNS
        if row.get(column) != expected[column]
    ]


# -- several processes -------------------------------------------------------------------


def verify(
    database_url: str,
    jobs: int = 1,
    *,
    batch: int = 5000,
    max_problems: int = 1000,
    progress: Progress = lambda done, total: None,
    on_problem: Callable[[Problem], None] = lambda problem: None,
    shard_main: Callable[..., None] | None = None,
    stranded_after_s: float | None = STRANDED_AFTER_S,
) -> VerifyReport:
    """Verify the store and read models at ``database_url`` with ``jobs`` processes.

    Verification is CPU-bound Python (hashing, decoding, replaying), so on a machine with
    several cores each process takes a slice of the aggregate ids; this process reads the
    baseline, shows progress and problems as they arrive, and adds up the totals.
    Raises ReadModelMissing when there are no read models to compare with, RuntimeError
    when a process fails. ``shard_main`` replaces the processes' entry point (tests).
    """
    service, db = _open(database_url)
    try:
        verifier = Verifier(
            service, db, batch, max_problems, progress, on_problem, stranded_after_s
        )
        if jobs <= 1:
            return verifier.run()
        baseline = verifier.baseline()
        total = verifier.total()
        context = multiprocessing.get_context("spawn")  # no fork of pools and threads
        messages: Any = context.Queue()
        processes = [
            context.Process(
                target=shard_main or _shard_main,
                args=(database_url, index, jobs, baseline.position, batch, max_problems, messages),
                name=f"verify-{index}",
                daemon=True,
            )
            for index in range(jobs)
        ]
        for process in processes:
            process.start()
        try:
            done = [0] * jobs
            results: dict[int, ShardResult] = {}
            while len(results) < jobs:
                try:
                    kind, index, payload = messages.get(timeout=1.0)
                except queue.Empty:
                    lost = [
                        p.name
                        for i, p in enumerate(processes)
                        if i not in results and not p.is_alive()
                    ]
                    if lost:
                        raise RuntimeError(
                            f"verification process(es) {', '.join(lost)} died"
                        ) from None
                    continue
                if kind == "progress":
                    done[index] = payload
                    progress(sum(done), total)
                elif kind == "problem":
                    verifier.show(payload)
                elif kind == "done":
                    results[index] = payload
                else:
                    raise RuntimeError(f"verification process {index} failed:\n{payload}")
        finally:
            for process in processes:
                process.join(10)
                if process.is_alive():
                    process.kill()
        for result in results.values():
            verifier.merge(result)
        progress(verifier.report.events, max(total, verifier.report.events))
        verifier.finish(baseline)
        return verifier.report
    finally:
        db.close()
        service.close()


def _open(database_url: str, create_tables: bool = True) -> tuple[TaskService, Database]:
    config = DatabaseConfig.from_url(database_url)
    env = config.eventsourcing_env(pool_size=1)
    if create_tables:
        prepare_database(config)
    else:  # shards: the coordinator has done it; concurrent DDL would collide
        env["CREATE_TABLE"] = "no"
    service = TaskService(env, DefinitionCatalog([]))
    try:
        db = Database(config, pool_size=1)
    except BaseException:
        service.close()
        raise
    return service, db


def _shard_main(
    database_url: str,
    index: int,
    count: int,
    position: int,
    batch: int,
    max_problems: int,
    messages: Any,
) -> None:
    """One verification process: its slice of the aggregates, reported on ``messages``."""
    try:
        service, db = _open(database_url, create_tables=False)
        try:
            verifier = Verifier(
                service,
                db,
                batch,
                max_problems,
                progress=lambda done, total: messages.put(("progress", index, done)),
                on_problem=lambda problem: messages.put(("problem", index, problem)),
            )
            verifier.start_at(position)
            verifier.scan(*shard_bounds(index, count))
            messages.put(("done", index, verifier.result()))
        finally:
            db.close()
            service.close()
    except BaseException:
        messages.put(("error", index, traceback.format_exc()))
