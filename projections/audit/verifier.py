"""The ``Verifier``: one process's share of ``taskexec verify`` (all of it with one job).

It reads the store aggregate by aggregate, in batches, checks each hash chain, has the
batch's tasks and definitions compared with their rows (projections/audit/replay_compare.py),
and at the end compares the read model's totals at the baseline position ``P0`` with the
replayed ones; see projections/audit/verify.py for the whole procedure.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg

from commands.event_decoder import StoredRecord
from commands.gc_pause import gc_paused
from commands.service import TaskService
from projections.audit.chain_check import ChainLink, check_chain
from projections.audit.findings import Problem, ReadModelMissing, VerifyReport
from projections.audit.history import Progress
from projections.audit.read_model_sql import Baseline, read_baseline, task_ids
from projections.audit.replay_compare import ReplayComparer
from projections.audit.stored_aggregate import StoredAggregate, by_aggregate, identify
from projections.db import Database
from projections.queries import Generation
from projections.stranded import stranded
from projections.tasks import timestamp_text

STRANDED_AFTER_S = 15 * 60.0  # a PENDING or RUNNING task unchanged this long is a finding


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
        self._reader = service.event_reader
        self._decoder = service.event_decoder
        self._generation = Generation(db)
        self._db = db
        self._batch = batch
        self._max_problems = max_problems
        self._progress = progress
        self._on_problem = on_problem
        self.report = VerifyReport()
        self._compare = ReplayComparer(
            self._reader, self._decoder, self._generation, self.report, self._add
        )
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
            baseline = self._generation.query(read_baseline)
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
        self._compare.p0 = position
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
            counts_at_p0=self._compare.counts_at_p0,
            definitions_at_p0=self._compare.definitions_at_p0,
            unreplayed=self._unreplayed,
        )

    def merge(self, result: ShardResult) -> None:
        """Add a shard's totals (its problems were shown with ``show`` as they came)."""
        self.report.events += result.events
        self.report.aggregates.update(result.aggregates)
        self.report.problem_count += result.problem_count
        self.report.compared.update(result.compared)
        self._compare.counts_at_p0.update(result.counts_at_p0)
        self._compare.definitions_at_p0 += result.definitions_at_p0
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
        aggregates = [self._check(group) for group in by_aggregate(records)]
        self.report.events += len(records)
        tasks = [a for a in aggregates if a.kind == "task" and not a.broken]
        definitions = [a for a in aggregates if a.kind == "definition" and not a.broken]
        if tasks:
            self._compare.tasks(tasks)
        if definitions:
            self._compare.definitions(definitions)

    def _check(self, records: list[StoredRecord]) -> StoredAggregate:
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
        aggregate = StoredAggregate(records[0].originator_id, records, states, events)
        aggregate.kind, aggregate.label = identify(aggregate)
        self.report.aggregates[aggregate.kind] += 1
        for fault in check_chain(aggregate.originator_id, links):
            if fault.kind in ("gap", "undecodable", "missing-hash"):
                aggregate.broken = True  # not replayed: its state cannot be trusted
            self._add(Problem(aggregate.kind, aggregate.label, fault.version, fault.message))
        if aggregate.broken:
            self._unreplayed[aggregate.kind] += 1
        return aggregate

    # -- the totals ----------------------------------------------------------------------

    def _compare_totals(self, baseline: Baseline) -> None:
        counts_at_p0 = self._compare.counts_at_p0
        replayed_tasks = sum(counts_at_p0.values())
        if baseline.task_rows != replayed_tasks:
            extra = self._generation.query(task_ids)
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
        for key in sorted(set(baseline.counts) | set(counts_at_p0)):
            if baseline.counts.get(key, 0) != counts_at_p0.get(key, 0):
                status, type_ = key
                self._add(
                    Problem(
                        "read-model",
                        "task_counts",
                        None,
                        f"{status}/{type_}: {baseline.counts.get(key, 0):,} counted, "
                        f"{counts_at_p0.get(key, 0):,} replayed",
                    )
                )
        for group in sorted(set(baseline.tenant_counts) | set(baseline.tenant_rows)):
            counted = baseline.tenant_counts.get(group, 0)
            rows = baseline.tenant_rows.get(group, 0)
            if counted != rows:  # the rows themselves are compared with the replay
                detail = f"{'/'.join(group)}: {counted:,} counted, {rows:,} rows"
                self._add(Problem("read-model", "task_tenant_counts", None, detail))
        definitions_at_p0 = self._compare.definitions_at_p0
        if baseline.definition_rows != definitions_at_p0:
            self._add(
                Problem(
                    "read-model",
                    "definition_view",
                    None,
                    f"{baseline.definition_rows:,} rows, the store has "
                    f"{definitions_at_p0:,} definitions up to position {baseline.position:,}",
                )
            )

    def _add(self, problem: Problem) -> None:
        self.report.problem_count += 1
        self.show(problem)
