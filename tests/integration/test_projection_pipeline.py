"""Small batches are written in PostgreSQL's pipeline mode, or deferred (one query sent
at the end): an error that only the database sees (at the batch's sync or its commit,
not at the statement) must still stop the projection naming where the batch began, and
leave nothing of the batch behind. Both backends; the Cursor's modes on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from api.bootstrap import read_models
from commands.messages import SubmitTask
from commands.persistence import DatabaseConfig, prepare_database
from commands.service import TaskService
from domain.task import Task
from domain.values import ANONYMOUS
from projections.db import Database
from projections.runner import ProjectionRunner, ProjectionStopped
from projections.schema import read_position
from tests.conftest import EXAMPLE_INPUT


def test_a_write_the_database_refuses_stops_the_projection_naming_the_batch(
    service: TaskService, read_db: Database
) -> None:
    db = read_db
    outcome = service.submit(SubmitTask("calculate-order-total", EXAMPLE_INPUT, ANONYMOUS))
    real = service.read_log(0, 100)
    submitted = next(e for _, e in real if isinstance(e, Task.Submitted))
    head = real[-1][0]

    def read_log(after: int, limit: int) -> list[tuple[int, Any]]:
        # After the real log, the same task submitted again: in memory it looks new (no
        # row is read for it), so only the INSERT finds the clash, in the database.
        if after < head:
            return [item for item in real if item[0] > after][:limit]
        return [(head + 1, submitted)] if after == head else []

    runner = ProjectionRunner(read_log, read_models(), db, batch_size=50)
    runner.start()
    try:
        with pytest.raises(ProjectionStopped, match=f"notification {head + 1}"):
            runner.wait_for(head + 1, timeout=10)
    finally:
        runner.stop()
    with db.read() as cur:
        assert read_position(cur, 1) == head  # the refused batch left nothing
        rows = cur.execute("SELECT COUNT(*) AS n FROM task_view_g1").fetchone()
    assert rows is not None and rows["n"] == 1
    assert outcome.position <= head


def test_a_fetch_in_a_pipelined_transaction_reads_its_own_statement(postgres_url: str) -> None:
    # psycopg keeps, per cursor, the results that had not arrived when the next statement
    # was sent, and a fetch reads the first of them: after statements whose answers are
    # never read (the batch's lock, a generation's DDL after a rebuild) the rows a batch
    # loaded were silently those of its first statement (two times in three, here).
    # Each statement has its own cursor now. Repeated: the old way failed by timing.
    db = Database(DatabaseConfig.from_url(postgres_url))
    try:
        for n in range(20):
            with db.transaction(pipelined=True) as cur:
                cur.execute("SELECT 1 AS first")
                cur.execute("CREATE TEMP TABLE IF NOT EXISTS pipelined_t (i int)")
                cur.execute("CREATE INDEX IF NOT EXISTS pipelined_i ON pipelined_t (i)")
                assert cur.select_tuples("SELECT ?::int AS n", (n,), binary=True) == [(n,)]
                cur.execute("CREATE INDEX IF NOT EXISTS pipelined_i ON pipelined_t (i)")
                assert cur.execute("SELECT ?::int AS m", (n,)).fetchone() == {"m": n}
                cur.execute("INSERT INTO pipelined_t VALUES (1), (2)")
                assert cur.rowcount == 2
    finally:
        db.close()


@pytest.fixture
def pg(postgres_url: str) -> Iterator[Database]:
    config = DatabaseConfig.from_url(postgres_url)
    prepare_database(config)
    db = Database(config)
    with db.transaction() as cur:
        cur.execute("DROP TABLE IF EXISTS deferred_t")
        cur.execute("CREATE TABLE deferred_t (i int PRIMARY KEY, s text)")
    yield db
    db.close()


def values(db: Database) -> list[tuple[Any, ...]]:
    with db.read() as cur:
        return cur.select_tuples("SELECT i, s FROM deferred_t ORDER BY i")


def test_a_deferred_transaction_sends_its_writes_at_the_end_all_or_nothing(
    pg: Database,
) -> None:
    awkward = "it's a \\ 'quoted' %s ? text"  # bound by the client: must arrive intact
    with pg.transaction(deferred=True) as cur:
        cur.execute("INSERT INTO deferred_t VALUES (?, ?)", (1, awkward))
        cur.executemany("INSERT INTO deferred_t VALUES (?, ?)", [(2, None), (3, "c")])
        assert values(pg) == []  # nothing sent yet
        assert cur.select_tuples("SELECT count(*) FROM deferred_t") == [(0,)]  # read at once
        with pytest.raises(RuntimeError, match="no results"):
            cur.execute("SELECT 1").fetchone()
        with pytest.raises(RuntimeError, match="no results"):
            _ = cur.rowcount
    assert values(pg) == [(1, awkward), (2, None), (3, "c")]

    # A statement that fails rolls back every one of the query, the ones before it too.
    with pytest.raises(psycopg.errors.UniqueViolation):
        write(pg, deferred=True, fail=False)
    # The body raising: nothing is sent at all.
    with pytest.raises(ValueError, match="before the end"):
        write(pg, deferred=True, fail=True)
    # The pooled connection goes back as it was: an ordinary transaction rolls back.
    with pytest.raises(ValueError, match="before the end"):
        write(pg, deferred=False, fail=True)
    assert values(pg) == [(1, awkward), (2, None), (3, "c")]


def write(db: Database, deferred: bool, fail: bool) -> None:
    """Two good statements, then (``fail``) an error of the caller's or a clash."""
    with db.transaction(deferred=deferred) as cur:
        cur.execute("INSERT INTO deferred_t VALUES (?, ?)", (4, "d"))
        cur.execute("UPDATE deferred_t SET s = ? WHERE i = ?", ("changed", 1))
        if fail:
            raise ValueError("before the end")
        cur.execute("INSERT INTO deferred_t VALUES (?, ?)", (2, "again"))


def test_a_deferred_transaction_keeps_transaction_local_settings_to_itself(
    pg: Database,
) -> None:
    # The runner's batch sets synchronous_commit for its own transaction only: in one
    # simple query of several statements, the implicit transaction is the scope.
    with pg.transaction(deferred=True) as cur:
        cur.execute("SELECT set_config('synchronous_commit', 'off', true)")
        cur.execute("INSERT INTO deferred_t SELECT 1, current_setting('synchronous_commit')")
    assert values(pg) == [(1, "off")]
    with pg.read() as cur:
        assert cur.select_tuples("SELECT current_setting('synchronous_commit')") == [("on",)]
