"""Audit end to end, on a SQLite file and on PostgreSQL: task history over HTTP and on the
command line, the export of every event, and ``taskexec verify`` catching altered,
deleted and inconsistent rows that a test writes straight into the databases."""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
from litestar.testing import TestClient

from api.bootstrap import command_stores
from api.http.app import create_app
from api.runtime import Runtime
from api.settings import Settings
from commands.apikeys import aggregate_id
from commands.messages import CancelTask, RecordReport, SubmitTask
from commands.persistence import DatabaseConfig
from commands.public_events import event_id
from domain.definition_record import definition_record_id
from domain.values import ANONYMOUS
from projections.audit.history import export
from projections.audit.verify import ReadModelMissing, Stores, verify
from tests.conftest import EXAMPLE_INPUT, EXAMPLE_OUTPUT, ROOT, taskexec
from tests.security_support import OPERATOR, new_key

TASKS = "/api/v1/tasks"


@dataclass
class Seeded:
    completed: UUID  # submitted, started, completed
    failed: UUID  # submitted, started, failed
    cancelled: UUID  # submitted, cancelled
    pending: UUID  # submitted


def seed(runtime: Runtime) -> Seeded:
    def submit() -> UUID:
        command = SubmitTask("calculate-order-total", EXAMPLE_INPUT, ANONYMOUS, "wf-audit")
        return runtime.submit(command).task_id

    ids = Seeded(submit(), submit(), submit(), submit())
    at = datetime.now(UTC)
    reports = [
        RecordReport(ids.completed, 1, "started", "w-1", at),
        RecordReport(ids.failed, 1, "started", "w-2", at),
        RecordReport(
            ids.completed, 1, "completed", "w-1", at + timedelta(seconds=1), EXAMPLE_OUTPUT
        ),
        RecordReport(
            ids.failed,
            1,
            "failed",
            "w-2",
            at + timedelta(seconds=2),
            error_type="PaymentDeclined",
            error_message="card declined",
            retryable=False,
        ),
    ]
    runtime.service.record_reports(reports)
    runtime.cancel(CancelTask(ids.cancelled, ANONYMOUS, reason="not needed"))
    _, key = runtime.apikeys.create(name="auditor", permissions=["tasks:audit"], actor=OPERATOR)
    runtime.apikeys.revoke(key.key_id, OPERATOR)
    head = runtime.service.recorder.max_notification_id() or 0
    runtime.runner.wait_for(head, 10)
    return ids


@pytest.fixture
def runtime(database_url: str, tmp_path: Path) -> Iterator[Runtime]:
    runtime = Runtime.open(Settings(database_url=database_url, var_dir=tmp_path))
    yield runtime
    runtime.close()


@pytest.fixture
def seeded(runtime: Runtime) -> Seeded:
    return seed(runtime)


class Tamper:
    """Writes straight into the event store and the read models, as an intruder would."""

    def __init__(self, database_url: str) -> None:
        self.config = DatabaseConfig.from_url(database_url)

    def _events(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        if self.config.is_postgres:
            with psycopg.connect(self.config.conninfo(), autocommit=True) as conn:
                cursor = conn.execute(
                    sql.replace("?", "%s").format(table="taskexec_events"), params
                )
                return cursor.fetchall() if cursor.description else []
        assert self.config.sqlite_path is not None
        with sqlite3.connect(self.config.sqlite_path) as conn:
            converted = tuple(p.hex if isinstance(p, UUID) else p for p in params)
            return conn.execute(sql.format(table="stored_events"), converted).fetchall()

    def state(self, task_id: UUID, version: int) -> bytes:
        rows = self._events(
            "SELECT state FROM {table} WHERE originator_id = ? AND originator_version = ?",
            (task_id, version),
        )
        return bytes(rows[0][0])

    def set_state(self, task_id: UUID, version: int, state: bytes) -> None:
        self._events(
            "UPDATE {table} SET state = ? WHERE originator_id = ? AND originator_version = ?",
            (state, task_id, version),
        )

    def delete(self, task_id: UUID, version: int) -> None:
        self._events(
            "DELETE FROM {table} WHERE originator_id = ? AND originator_version = ?",
            (task_id, version),
        )

    def read_model(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """``sql`` against the read models (``{g}``: the active generation); the rows,
        with the column names first."""
        if self.config.is_postgres:
            with psycopg.connect(self.config.conninfo(), autocommit=True) as conn:
                row = conn.execute("SELECT generation FROM read_model_generation").fetchone()
                assert row is not None
                cursor = conn.execute(sql.format(g=row[0]).replace("?", "%s"), params)
                if cursor.description is None:
                    return []
                return [tuple(c.name for c in cursor.description), *cursor.fetchall()]
        with sqlite3.connect(self.config.read_model_path) as conn:
            (generation,) = conn.execute("SELECT generation FROM read_model_generation").fetchone()
            lite = conn.execute(sql.format(g=generation), params)
            if lite.description is None:
                return []
            return [tuple(c[0] for c in lite.description), *lite.fetchall()]

    def copy_task_row(self, task_id: UUID, new_id: str) -> None:
        """A read-model row for a task the store has never heard of."""
        columns, values = self.read_model(
            "SELECT * FROM task_view_g{g} WHERE id = ?", (str(task_id),)
        )
        row = dict(zip(columns, values, strict=True))
        row["id"] = new_id
        marks = ", ".join("?" for _ in row)
        self.read_model(
            f"INSERT INTO task_view_g{{g}} ({', '.join(row)}) VALUES ({marks})", tuple(row.values())
        )


# -- history -------------------------------------------------------------------------------


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient[Any]]:
    with TestClient(create_app(runtime, None)) as test_client:
        test_client.headers["X-API-Key"] = new_key(runtime, "tasks:audit", "tasks:read")
        yield test_client


def test_history_lists_a_tasks_events_in_order_with_their_chain(
    client: TestClient[Any], runtime: Runtime
) -> None:
    ids = seed(runtime)
    response = client.get(f"{TASKS}/{ids.completed}/history")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["taskId"] == str(ids.completed)
    events = body["events"]
    assert [e["type"] for e in events] == ["submitted", "started", "completed"]
    assert [e["version"] for e in events] == [1, 2, 3]
    assert [e["status"] for e in events] == ["PENDING", "RUNNING", "COMPLETED"]
    assert [e["id"] for e in events] == [event_id(ids.completed, v) for v in (1, 2, 3)]
    positions = [e["position"] for e in events]
    assert positions == sorted(positions) and len(set(positions)) == 3
    assert events[0]["actor"] == {"id": "anonymous", "kind": "anonymous"}
    assert events[1]["actor"] == {"id": "w-1", "kind": "worker"}
    assert events[0]["data"]["taskDefinitionId"] == "calculate-order-total"
    assert events[0]["data"]["input"] == EXAMPLE_INPUT
    assert events[1]["data"] == {"attempt": 1, "executionEnvironment": "w-1"}
    assert events[2]["data"] == {"attempt": 1, "output": EXAMPLE_OUTPUT}
    assert events[0]["prevHash"] == "0" * 64
    assert events[1]["prevHash"] == events[0]["hash"]
    assert events[2]["prevHash"] == events[1]["hash"]
    times = [e["time"] for e in events]
    assert times == sorted(times) and all(t.endswith("Z") for t in times)

    failed = client.get(f"{TASKS}/{ids.failed}/history").json()["events"]
    assert [e["type"] for e in failed] == ["submitted", "started", "failed"]
    assert failed[2]["data"]["error"] == {"type": "PaymentDeclined", "message": "card declined"}
    cancelled = client.get(f"{TASKS}/{ids.cancelled}/history").json()["events"]
    assert [e["type"] for e in cancelled] == ["submitted", "cancelled"]
    assert cancelled[1]["data"] == {"reason": "not needed", "force": False}


def test_history_needs_tasks_audit_and_shows_only_tasks(
    client: TestClient[Any], runtime: Runtime
) -> None:
    ids = seed(runtime)
    path = f"{TASKS}/{ids.completed}/history"
    assert client.get(path, headers={"X-API-Key": ""}).status_code == 401
    reader = new_key(runtime, "tasks:read", "tasks:list")
    denied = client.get(path, headers={"X-API-Key": reader})
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "FORBIDDEN"

    _, record = runtime.apikeys.create(name="x", permissions=["tasks:read"], actor=ANONYMOUS)
    for other in (
        "00000000-0000-4000-8000-000000000000",  # no such aggregate
        "not-a-task-id",
        str(aggregate_id(record.key_id)),  # an API key's events stay private
        str(definition_record_id("calculate-order-total")),  # so do a definition's
    ):
        response = client.get(f"{TASKS}/{other}/history")
        assert response.status_code == 404, other
        assert response.json()["error"]["code"] == "NOT_FOUND"


def test_history_route_is_documented_with_its_permission(client: TestClient[Any]) -> None:
    schema = client.get("/schema/openapi.json").json()
    operation = schema["paths"][f"{TASKS}/{{taskId}}/history"]["get"]
    assert {"200", "401", "403", "404"} <= set(operation["responses"])
    assert operation["security"] == [{"bearerAuth": []}, {"apiKeyAuth": []}]


def test_the_history_command_prints_a_table_and_the_apis_json(
    database_url: str, tmp_path: Path, client: TestClient[Any], runtime: Runtime
) -> None:
    ids = seed(runtime)
    table = taskexec(database_url, tmp_path, "history", str(ids.failed))
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0] == f"task {ids.failed}: 3 event(s)"
    assert lines[1].split() == ["VERSION", "TIME", "TYPE", "STATUS", "ACTOR", "HASH", "DETAILS"]
    assert [line.split()[2] for line in lines[2:]] == ["submitted", "started", "failed"]
    assert "worker:w-2" in lines[4] and "PaymentDeclined" in lines[4]

    as_json = taskexec(database_url, tmp_path, "history", str(ids.failed), "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == client.get(f"{TASKS}/{ids.failed}/history").json()

    unknown = taskexec(database_url, tmp_path, "history", "00000000-0000-4000-8000-000000000000")
    assert unknown.returncode == 1 and "not found" in unknown.stderr
    bad = taskexec(database_url, tmp_path, "history", "nope")
    assert bad.returncode == 2 and "not a task id" in bad.stderr


# -- export --------------------------------------------------------------------------------


def test_export_writes_every_event_in_global_order_and_verifies_independently(
    database_url: str, tmp_path: Path, runtime: Runtime, seeded: Seeded
) -> None:
    out = tmp_path / "events.jsonl"
    result = taskexec(database_url, tmp_path, "audit", "export", "--output", str(out))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    reader = runtime.service.event_reader
    assert len(lines) == reader.count()
    assert f"exported {len(lines)} events" in result.stderr
    positions = [line["position"] for line in lines]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    assert {line["aggregateType"] for line in lines} == {"task", "definition", "apikey"}
    assert set(lines[0]) == {
        "position", "id", "aggregateType", "aggregateId", "type", "version", "time",
        "actor", "data", "prevHash", "hash", "topic", "timestamp", "fields",
    }  # fmt: skip
    completed = [line for line in lines if line["aggregateId"] == str(seeded.completed)]
    assert [(line["type"], line["version"]) for line in completed] == [
        ("submitted", 1),
        ("started", 2),
        ("completed", 3),
    ]
    assert completed[2]["data"] == {"attempt": 1, "output": EXAMPLE_OUTPUT}
    assert not list(tmp_path.glob(".events.jsonl.partial"))

    checker = ROOT / "docs" / "examples" / "verify_export.py"
    ok = subprocess.run([sys.executable, checker, out], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout
    assert ok.stdout.strip() == f"OK: {len(lines)} event(s), every hash chain intact"

    # One changed value in the export: the independent check names it.
    tampered = tmp_path / "tampered.jsonl"
    text = out.read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if line["type"] == "completed")
    text[index] = text[index].replace("50.73", "5.73")
    tampered.write_text("\n".join(text) + "\n")
    bad = subprocess.run(
        [sys.executable, checker, tampered], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 1
    assert f"task {seeded.completed} version 3: hash does not match" in bad.stdout


def test_export_filters_by_time_streams_in_batches_and_refuses_bad_options(
    database_url: str, tmp_path: Path, runtime: Runtime, seeded: Seeded
) -> None:
    small, large = tmp_path / "small.jsonl", tmp_path / "large.jsonl"
    with small.open("wb") as out:
        export(runtime.service, out, batch=3)
    with large.open("wb") as out:
        export(runtime.service, out, batch=5000)
    assert small.read_bytes() == large.read_bytes()
    everything = [json.loads(line) for line in large.read_text().splitlines()]

    middle = sorted(line["timestamp"] for line in everything)[len(everything) // 2]
    since = datetime.fromisoformat(middle)
    result = taskexec(database_url, tmp_path, "audit", "export", "--since", middle)
    assert result.returncode == 0, result.stderr
    later = [json.loads(line) for line in result.stdout.splitlines()]
    expected = [line for line in everything if datetime.fromisoformat(line["timestamp"]) >= since]
    assert later == expected and 0 < len(later) < len(everything)
    until = taskexec(database_url, tmp_path, "audit", "export", "--until", middle)
    earlier = [json.loads(line) for line in until.stdout.splitlines()]
    assert len(earlier) + len(later) == len(everything)
    assert all(datetime.fromisoformat(line["timestamp"]) < since for line in earlier)

    for args in (["--since", "yesterday"], ["--since", "2030-01-01", "--until", "2020-01-01"]):
        refused = taskexec(database_url, tmp_path, "audit", "export", *args)
        assert refused.returncode == 2, args
        assert refused.stdout == ""


# -- verify --------------------------------------------------------------------------------


def test_verify_passes_on_a_clean_store(
    database_url: str, tmp_path: Path, runtime: Runtime, seeded: Seeded
) -> None:
    result = taskexec(database_url, tmp_path, "verify")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("OK: ")
    assert "every hash chain intact" in result.stdout
    report = verify(stores(database_url), jobs=1)
    assert report.ok and report.problems == []
    assert (report.aggregates["task"], report.aggregates["apikey"]) == (4, 1)
    assert report.compared["task"] == 4
    assert report.compared["definition"] == report.aggregates["definition"] >= 2
    assert report.events == runtime.service.event_reader.count()


def test_verify_catches_an_event_altered_in_the_database(
    database_url: str, tmp_path: Path, runtime: Runtime, seeded: Seeded
) -> None:
    tamper = Tamper(database_url)
    original = tamper.state(seeded.completed, 3)
    assert b"50.73" in original
    tamper.set_state(seeded.completed, 3, original.replace(b"50.73", b"5.73"))

    result = taskexec(database_url, tmp_path, "verify")
    assert result.returncode == 1
    expected = f"FAIL task {seeded.completed} version 3: content does not match its hash"
    assert expected in result.stdout
    assert result.stdout.splitlines()[-1].startswith("FAILED: ")

    report = verify(stores(database_url), jobs=1)
    found = {(p.aggregate, p.version) for p in report.problems}
    assert (str(seeded.completed), 3) in found
    # The replay (of the altered event) no longer matches the read model either.
    assert any("output" in p.message for p in report.problems)
    assert {p.aggregate for p in report.problems} == {str(seeded.completed)}


def test_verify_with_several_processes_finds_the_same_problems(
    database_url: str, runtime: Runtime, seeded: Seeded
) -> None:
    tamper = Tamper(database_url)
    tamper.set_state(seeded.failed, 2, tamper.state(seeded.failed, 2).replace(b"w-2", b"w-9"))
    one, two = verify(stores(database_url), jobs=1), verify(stores(database_url), jobs=2)
    assert {str(p) for p in one.problems} == {str(p) for p in two.problems}
    assert (one.events, one.aggregates, one.problem_count) == (
        two.events,
        two.aggregates,
        two.problem_count,
    )
    assert any(p.aggregate == str(seeded.failed) and p.version == 2 for p in two.problems)


def test_verify_catches_a_deleted_event(
    database_url: str, tmp_path: Path, runtime: Runtime, seeded: Seeded
) -> None:
    Tamper(database_url).delete(seeded.completed, 2)
    result = taskexec(database_url, tmp_path, "verify")
    assert result.returncode == 1
    assert f"FAIL task {seeded.completed} version 3: version 2 missing" in result.stdout


def test_verify_catches_a_deleted_last_event_through_the_read_model(
    database_url: str, runtime: Runtime, seeded: Seeded
) -> None:
    Tamper(database_url).delete(seeded.completed, 3)  # no gap: the chain alone looks fine
    report = verify(stores(database_url), jobs=1)
    assert not report.ok
    (problem,) = [p for p in report.problems if p.aggregate == str(seeded.completed)]
    assert problem.version == 2
    assert "the read model is at version 3, the store has only 2" in problem.message


def test_verify_catches_an_altered_read_model_row(
    database_url: str, tmp_path: Path, runtime: Runtime, seeded: Seeded
) -> None:
    Tamper(database_url).read_model(
        "UPDATE task_view_g{g} SET status = 'COMPLETED', attempts = 2 WHERE id = ?",
        (str(seeded.failed),),
    )
    result = taskexec(database_url, tmp_path, "verify")
    assert result.returncode == 1
    line = next(line for line in result.stdout.splitlines() if str(seeded.failed) in line)
    assert line.startswith(f"FAIL task {seeded.failed} version 3: read model differs")
    assert "status: read model 'COMPLETED', replay 'FAILED'" in line
    assert "attempts: read model 2, replay 1" in line


def test_verify_catches_rows_the_store_does_not_know_and_drifted_counts(
    database_url: str, runtime: Runtime, seeded: Seeded
) -> None:
    tamper = Tamper(database_url)
    stranger = "00000000-0000-4000-8000-00000000beef"
    tamper.copy_task_row(seeded.pending, stranger)
    tamper.read_model(
        "UPDATE task_counts_g{g} SET n = n + 1 WHERE status = 'PENDING' AND type = 'AUTOMATED'"
    )
    report = verify(stores(database_url), jobs=1)
    messages = [str(p) for p in report.problems]
    assert f"task {stranger}: in the read model but not in the event store" in messages
    assert any(m.startswith("read-model task_view: 5 rows") for m in messages)
    assert any(
        m.startswith("read-model task_counts: PENDING/AUTOMATED: 2 counted, 1 replayed")
        for m in messages
    )


def test_verify_names_undecodable_events_and_events_without_a_hash(
    database_url: str, runtime: Runtime, seeded: Seeded
) -> None:
    tamper = Tamper(database_url)
    tamper.set_state(seeded.pending, 1, b"\x00not json")
    state = json.loads(tamper.state(seeded.cancelled, 2))
    del state["hash"], state["prev_hash"]
    tamper.set_state(seeded.cancelled, 2, json.dumps(state).encode())
    report = verify(stores(database_url), jobs=1)
    by_task = {p.aggregate: p for p in report.problems}
    assert by_task[str(seeded.pending)].version == 1
    assert "undecodable" in by_task[str(seeded.pending)].message
    assert by_task[str(seeded.cancelled)].version == 2
    assert by_task[str(seeded.cancelled)].message == "no hash chain fields"


def test_verify_leaves_out_what_the_read_model_has_not_applied_yet(
    database_url: str, runtime: Runtime, seeded: Seeded
) -> None:
    runtime.runner.stop()  # the read model stands still; the store goes on
    command = SubmitTask("calculate-order-total", EXAMPLE_INPUT, ANONYMOUS)
    later = runtime.service.submit(command)
    runtime.service.cancel(CancelTask(seeded.pending, ANONYMOUS))
    report = verify(stores(database_url), jobs=1)
    assert report.ok, [str(p) for p in report.problems]
    head = runtime.service.recorder.max_notification_id()
    assert report.read_model_position < later.position < report.head == head
    assert report.aggregates["task"] == 5


def test_verify_without_read_models_says_so(database_url: str, tmp_path: Path) -> None:
    from commands.catalog import DefinitionCatalog
    from commands.persistence import prepare_database
    from commands.service import TaskService

    config = DatabaseConfig.from_url(database_url)
    prepare_database(config)
    service = TaskService(config.eventsourcing_env(pool_size=2), DefinitionCatalog([]))
    service.close()
    with pytest.raises(ReadModelMissing):
        verify(stores(database_url), jobs=1)
    result = taskexec(database_url, tmp_path, "verify")
    assert result.returncode == 1
    assert "the read models do not exist yet" in result.stderr


# -- failure paths -------------------------------------------------------------------------


def test_export_and_history_stop_at_an_undecodable_event_naming_its_position(
    database_url: str, tmp_path: Path, client: TestClient[Any], runtime: Runtime
) -> None:
    ids = seed(runtime)
    Tamper(database_url).set_state(ids.failed, 2, b"\x00garbage")
    position = runtime.service.event_reader.aggregate(ids.failed)[1].position
    out = tmp_path / "events.jsonl"
    result = taskexec(database_url, tmp_path, "audit", "export", "--output", str(out))
    assert result.returncode == 1
    assert f"notification {position} cannot be decoded" in result.stderr
    assert "taskexec verify" in result.stderr
    assert not out.exists() and not list(tmp_path.glob(".events.jsonl.partial"))

    history = taskexec(database_url, tmp_path, "history", str(ids.failed))
    assert history.returncode == 1
    assert f"notification {position} cannot be decoded" in history.stderr
    response = client.get(f"{TASKS}/{ids.failed}/history")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "INTERNAL_ERROR"
    assert "garbage" not in response.text  # no internals in the answer
    # The other tasks' history is still there.
    assert client.get(f"{TASKS}/{ids.completed}/history").status_code == 200


def stores(database_url: str) -> Stores:
    """What ``taskexec verify`` opens (api/bootstrap.py), for the store at ``database_url``."""
    return functools.partial(command_stores, Settings(database_url=database_url))


def failing_shard(stores: Any, index: int, *args: Any) -> None:
    """A verification process whose work fails: it reports its traceback, as
    ``_shard_main`` does."""
    args[-1].put(("error", index, "Traceback …\nRuntimeError: disk on fire\n"))


def dying_shard(stores: Any, index: int, *args: Any) -> None:
    """A verification process that dies without a word (killed, out of memory, …)."""
    os._exit(3)


def test_a_failing_or_dying_verification_process_fails_the_verification(
    database_url: str, runtime: Runtime, seeded: Seeded
) -> None:
    with pytest.raises(RuntimeError, match="failed"):
        verify(stores(database_url), jobs=2, shard_main=failing_shard)
    # Both die; which deaths are seen first depends on how fast each spawned process starts.
    with pytest.raises(
        RuntimeError, match=r"process\(es\) (verify-0|verify-1|verify-0, verify-1) died"
    ):
        verify(stores(database_url), jobs=2, shard_main=dying_shard)


def test_verify_finds_tasks_that_wait_longer_than_the_bound(
    database_url: str, tmp_path: Path, runtime: Runtime, seeded: Seeded
) -> None:
    long_ago = datetime.now(UTC) - timedelta(minutes=5)  # its timeout (60 s) is past
    command = SubmitTask("calculate-order-total", EXAMPLE_INPUT, ANONYMOUS)
    running = runtime.submit(command).task_id
    runtime.service.record_reports([RecordReport(running, 1, "started", "w-gone", long_ago)])
    runtime.runner.wait_for(runtime.service.recorder.max_notification_id() or 0, 10)

    assert verify(stores(database_url), jobs=1).ok  # within the default bound (15 min): not yet
    result = taskexec(database_url, tmp_path, "verify", "--stranded-after", "0.01s")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"FAIL task {seeded.pending}: PENDING since " in result.stdout
    assert f"FAIL task {running}: RUNNING since " in result.stdout
    assert "(stranded)" in result.stdout
    report = verify(stores(database_url), jobs=1, stranded_after_s=0.01)
    assert {p.aggregate for p in report.problems} == {str(seeded.pending), str(running)}
    assert verify(stores(database_url), jobs=1, stranded_after_s=None).ok  # off

    refused = taskexec(database_url, tmp_path, "verify", "--stranded-after", "soon")
    assert refused.returncode == 2
    assert "--stranded-after" in refused.stderr
