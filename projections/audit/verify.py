"""``taskexec verify``: check every hash chain, replay every aggregate, compare with the
read models; with several processes, each takes a slice of the aggregate ids.

The store is read aggregate by aggregate (``EventReader.by_aggregate`` of
commands/event_reader.py: id, then version, in batches), so one aggregate is complete
when the next one starts and memory stays bounded whatever the store's size. For each
batch of complete aggregates (``Verifier``, projections/audit/verifier.py):

1. every chain is checked (projections/audit/chain_check.py): versions 1, 2, … with no
   gap, each hash recomputed from the stored content, each ``prev_hash`` linked;
2. the read-model rows of the batch's tasks and definitions are read together with the
   read model's position ``P``, in one snapshot (projections/audit/read_model_sql.py);
3. each aggregate is replayed from its events up to ``P`` and compared with its row
   (projections/audit/replay_compare.py).

Before the scan, the per-(status, type) counts and the number of rows are read at one
position ``P0``; at the end they are compared with the replayed state at ``P0``. That
catches rows the store knows nothing about (inserted or left behind) and counters that
drifted from the rows.
"""

from __future__ import annotations

import multiprocessing
import queue
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from commands.service import TaskService
from projections.audit.findings import Problem, ReadModelMissing, VerifyReport
from projections.audit.history import Progress
from projections.audit.verifier import (
    STRANDED_AFTER_S,
    ShardResult,
    Verifier,
    shard_bounds,
)
from projections.db import Database

# The event store and the read models, opened by the composition root (api/bootstrap.py
# ``command_stores``); ``False``: the tables exist already (verify's own processes, where
# concurrent DDL would collide). Picklable: the processes open their own.
Stores = Callable[[bool], AbstractContextManager[tuple[TaskService, Database]]]

__all__ = [
    "STRANDED_AFTER_S",
    "Problem",
    "ReadModelMissing",
    "Verifier",
    "VerifyReport",
    "shard_bounds",
    "verify",
]


def verify(
    stores: Stores,
    jobs: int = 1,
    *,
    batch: int = 5000,
    max_problems: int = 1000,
    progress: Progress = lambda done, total: None,
    on_problem: Callable[[Problem], None] = lambda problem: None,
    shard_main: Callable[..., None] | None = None,
    stranded_after_s: float | None = STRANDED_AFTER_S,
) -> VerifyReport:
    """Verify the store and read models ``stores`` opens, with ``jobs`` processes.

    Verification is CPU-bound Python (hashing, decoding, replaying), so on a machine with
    several cores each process takes a slice of the aggregate ids; this process reads the
    baseline, shows progress and problems as they arrive, and adds up the totals.
    Raises ReadModelMissing when there are no read models to compare with, RuntimeError
    when a process fails. ``shard_main`` replaces the processes' entry point (tests).
    """
    with stores(True) as (service, db):
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
                args=(stores, index, jobs, baseline.position, batch, max_problems, messages),
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


def _shard_main(
    stores: Stores,
    index: int,
    count: int,
    position: int,
    batch: int,
    max_problems: int,
    messages: Any,
) -> None:
    """One verification process: its slice of the aggregates, reported on ``messages``."""
    try:
        with stores(False) as (service, db):
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
    except BaseException:
        messages.put(("error", index, traceback.format_exc()))
