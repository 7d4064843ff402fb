"""``ProjectionRunner.applied``: read-your-writes for coroutines, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from api.bootstrap import read_models
from commands.messages import SubmitTask
from commands.service import TaskService
from domain.task import Task
from domain.values import ANONYMOUS
from projections.db import Database
from projections.queries import TaskQueries
from projections.runner import ProjectionRunner, ProjectionStopped
from tests.conftest import EXAMPLE_INPUT


async def test_the_future_is_done_once_the_row_is_readable(
    service: TaskService, read_db: Database
) -> None:
    db = read_db
    runner = ProjectionRunner(service.read_log, read_models(), db)
    runner.start()
    try:
        outcomes = [
            service.submit(SubmitTask("calculate-order-total", EXAMPLE_INPUT, ANONYMOUS))
            for _ in range(3)
        ]
        # Waiters in any order; each is released when its position is applied.
        futures = [runner.applied(o.position) for o in reversed(outcomes)]
        await asyncio.wait_for(asyncio.gather(*map(asyncio.wrap_future, futures)), 10)
        queries = TaskQueries(db)
        assert all(queries.get(str(o.task_id)) is not None for o in outcomes)
        # A position applied already: done at once.
        assert runner.applied(outcomes[0].position).done()
    finally:
        runner.stop()


async def test_waiters_learn_that_the_projection_stopped(
    read_db: Database,
) -> None:
    db = read_db
    orphan = Task.Started(  # type: ignore[call-arg]
        originator_id=uuid4(),
        originator_version=2,
        timestamp=datetime.now(UTC),
        actor={"id": "w", "kind": "worker"},
        attempt=1,
        worker="w",
        prev_hash="0" * 64,
        hash="0" * 64,
    )

    def read_log(after: int, limit: int) -> list[tuple[int, object]]:
        return [(5, orphan)] if after < 5 else []

    runner = ProjectionRunner(read_log, read_models(), db)
    waiting = runner.applied(5)  # registered before the runner even starts
    runner.start()
    try:
        with pytest.raises(ProjectionStopped, match="notification 5"):
            await asyncio.wait_for(asyncio.wrap_future(waiting), 10)
        later = runner.applied(6)  # after the stop: fails at once
        assert later.done()
        with pytest.raises(ProjectionStopped):
            later.result()
    finally:
        runner.stop()
