"""A read model made before ``error_type``, ``scheduled_at`` and ``tenant`` existed (the
table of an older version) is brought up to date where the runner starts
(projections/task_upgrade.py): the columns are added, ``error_type`` filled from each row's
``error``, a NUL in the error included, the tenant's indexes and counts made, and the rows
are then exactly the ones a fresh projection writes; ``verify`` would see none differ."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from api.bootstrap import read_models
from commands.persistence import DatabaseConfig
from commands.service import TaskService
from domain.task import Task
from domain.values import ANONYMOUS, Actor
from projections.audit.replay_compare import task_differences
from projections.db import Database
from projections.runner import ProjectionRunner
from projections.task_upgrade import columns
from tests.read_side_support import make_history, reference_rows

WORKER = Actor("w", "worker")


def with_a_nul_in_its_error(service: TaskService) -> str:
    definition = service.catalog.get("calculate-order-total")
    assert definition is not None
    at = datetime(2026, 3, 2, tzinfo=UTC)
    task = Task.submit(task_id=uuid4(), at=at, actor=ANONYMOUS, definition=definition, input={})
    task.start(attempt=1, worker="w", at=at, actor=WORKER)
    task.fail(
        attempt=1,
        error_type="Bad\x00Type",
        error_message="a\x00b",
        at=at,
        actor=WORKER,
        retryable=False,
    )
    service.save(task)
    return str(task.id)


def project(service: TaskService, db: Database) -> ProjectionRunner:
    runner = ProjectionRunner(service.read_log, read_models(), db)
    runner.prepare()
    while runner.run_once():
        pass
    return runner


def rows(db: Database) -> dict[str, dict[str, Any]]:
    with db.read() as cur:
        return {r["id"]: r for r in cur.execute("SELECT * FROM task_view_g1").fetchall()}


def test_an_older_table_gets_the_column_filled_and_then_projects_on(
    service: TaskService, database_url: str
) -> None:
    make_history(service, tasks=60)
    nul = with_a_nul_in_its_error(service)
    db = Database(DatabaseConfig.from_url(database_url))
    try:
        project(service, db)
        with db.transaction() as cur:  # as an older version made it
            for index in ("created", "status", "type", "workflow", "error_type"):
                cur.execute(f"DROP INDEX ix_task_tenant_{index}_g1")
            cur.execute("DROP TABLE task_tenant_counts_g1")
            cur.execute("DROP INDEX ix_task_error_type_g1")
            for column in ("tenant", "error_type", "scheduled_at"):
                cur.execute(f"ALTER TABLE task_view_g1 DROP COLUMN {column}")
            assert not {"error_type", "scheduled_at", "tenant"} & columns(cur, "task_view_g1")

        runner = project(service, db)  # a newer serve starts
        expected = reference_rows(service.read_log(0, 100_000))
        expected[nul]["error_type"] = "Bad\ufffdType"  # kept as free text is kept
        assert rows(db) == expected
        assert {r["error_type"] for r in expected.values()} >= {"E", "TIMEOUT", None}

        # And it projects on: a requeue clears it, a new failure sets it.
        failed = next(t for t, r in expected.items() if r["status"] == "FAILED" and t != nul)
        task = service.load(UUID(failed))
        task.requeue(reason=None, at=datetime.now(UTC), actor=ANONYMOUS)
        service.save(task)
        while runner.run_once():
            pass
        assert rows(db)[failed]["error_type"] is None
        # A scheduled task: its time in the added column, and as its next attempt's.
        definition = service.catalog.get("calculate-order-total")
        assert definition is not None
        due = datetime(2026, 3, 3, 12, 0, 0, 250000, tzinfo=UTC)
        later = Task.submit(
            task_id=uuid4(), at=datetime.now(UTC), actor=ANONYMOUS, definition=definition,
            input={}, scheduled_at=due,
        )  # fmt: skip
        service.save(later)
        while runner.run_once():
            pass
        row = rows(db)[str(later.id)]
        assert row["scheduled_at"] == row["next_attempt_at"] == "2026-03-03T12:00:00.250000Z"
        # A tenant's task: its tenant in the added column, counted in the added table.
        theirs = Task.submit(
            task_id=uuid4(), at=datetime.now(UTC), actor=ANONYMOUS, definition=definition,
            input={}, tenant="acme",
        )  # fmt: skip
        service.save(theirs)
        while runner.run_once():
            pass
        assert rows(db)[str(theirs.id)]["tenant"] == "acme"
        assert all(r["tenant"] is None for t, r in rows(db).items() if t != str(theirs.id))
        with db.read() as cur:
            counted = cur.execute("SELECT * FROM task_tenant_counts_g1").fetchall()
            assert [(r["tenant"], r["status"], int(r["n"])) for r in counted] == [
                ("acme", "PENDING", 1)
            ]
        for task_id, row in rows(db).items():
            assert task_differences(service.load(UUID(task_id)), row) == [], task_id
    finally:
        db.close()
