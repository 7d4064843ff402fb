"""Group commit on real event stores (SQLite and PostgreSQL): one transaction per batch,
and each command's own answer when some of the batch fail."""

from __future__ import annotations

import threading
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import IntegrityError

from api.runtime import Runtime
from api.settings import Settings
from commands.catalog import DefinitionCatalog
from commands.errors import Conflict, NotFound, ValidationFailed
from commands.messages import CancelTask, Outcome, RecordReport, SubmitTask
from commands.persistence import DatabaseConfig
from commands.service import TaskService
from domain.task import Task
from domain.values import ANONYMOUS, Actor, Priority
from tests.conftest import EXAMPLE_INPUT

ALICE = Actor("alice", "jwt")


def order(**overrides: Any) -> SubmitTask:
    fields: dict[str, Any] = {
        "definition_id": "calculate-order-total",
        "input": EXAMPLE_INPUT,
        "actor": ALICE,
    }
    fields.update(overrides)
    return SubmitTask(**fields)


@pytest.fixture
def counting(service: TaskService, monkeypatch: pytest.MonkeyPatch) -> TaskService:
    """The service, counting what it records (each ``events.put`` is one transaction) in
    ``saves``."""
    real_put = service.events.put
    service.saves = 0  # type: ignore[attr-defined]

    def put(*args: Any, **kwargs: Any) -> Any:
        service.saves += 1  # type: ignore[attr-defined]
        return real_put(*args, **kwargs)

    monkeypatch.setattr(service.events, "put", put)
    return service


def submitted(service: TaskService) -> list[Task.Submitted]:
    return [e for _, e in service.read_log(0, 10_000) if isinstance(e, Task.Submitted)]


def test_a_mixed_batch_is_one_transaction_with_an_answer_per_command(
    counting: Any,
) -> None:
    earlier = counting.submit(order())
    finished = counting.submit(order())
    counting.cancel(CancelTask(finished.task_id, ANONYMOUS))
    counting.saves = 0
    missing = uuid4()
    results = counting.execute(
        [
            order(workflow_instance_id="wf-a"),
            order(definition_id="no-such-definition"),
            CancelTask(earlier.task_id, ANONYMOUS, reason="changed my mind"),
            order(input={"orderId": 7}),
            CancelTask(finished.task_id, ANONYMOUS),
            CancelTask(missing, ANONYMOUS),
            order(workflow_instance_id="wf-b"),
        ]
    )
    assert counting.saves == 1  # everything that was accepted, in one transaction
    first, unknown, cancelled, invalid, conflict, not_found, last = results
    assert isinstance(first, Outcome) and isinstance(last, Outcome)
    assert (first.status, last.status) == ("PENDING", "PENDING")
    assert isinstance(unknown, NotFound) and isinstance(not_found, NotFound)
    assert isinstance(invalid, ValidationFailed)
    assert isinstance(conflict, Conflict) and conflict.details == {"status": "CANCELLED"}
    assert isinstance(cancelled, Outcome) and cancelled.status == "CANCELLED"
    assert counting.load(earlier.task_id).cancel_reason == "changed my mind"
    workflows = {e.workflow_instance_id for e in submitted(counting)}
    assert workflows == {None, "wf-a", "wf-b"}
    head = counting.recorder.max_notification_id()
    assert max(first.position, cancelled.position, last.position) == head


def test_two_cancels_of_one_task_in_a_batch_act_in_order(service: TaskService) -> None:
    task = service.submit(order())
    first, second = service.execute(
        [CancelTask(task.task_id, ANONYMOUS, reason="one"), CancelTask(task.task_id, ALICE)]
    )
    assert isinstance(first, Outcome) and first.status == "CANCELLED"
    assert isinstance(second, Conflict)
    reloaded = service.load(task.task_id)
    assert (reloaded.version, reloaded.cancel_reason) == (2, "one")


def test_the_same_key_twice_in_a_batch_makes_one_task(service: TaskService) -> None:
    a, b, c = service.execute(
        [
            order(idempotency_key="k"),
            order(idempotency_key="k"),
            order(idempotency_key="k", priority=Priority.HIGH),
        ]
    )
    assert isinstance(a, Outcome) and isinstance(b, Outcome)
    assert (a.task_id, a.replayed, b.replayed) == (b.task_id, False, True)
    assert isinstance(c, ValidationFailed)
    assert len(submitted(service)) == 1


class RacingReplica(TaskService):
    """Between deciding a batch and saving it, another replica saves what ``rival`` says:
    the batch's save then hits the store's uniqueness (IntegrityError)."""

    name = TaskService.name

    def __init__(self, *args: Any, rival: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rival = rival
        self.loads = 0

    def load_many(self, ids: Collection[UUID]) -> dict[UUID, Task]:
        found = super().load_many(ids)
        self.loads += 1
        if self.loads == 1:
            self._rival()
        return found


def racing(database_url: str, rival: Any) -> RacingReplica:
    config = DatabaseConfig.from_url(database_url)
    return RacingReplica(config.eventsourcing_env(), DefinitionCatalog.load(), rival=rival)


@pytest.mark.parametrize("same_body", [True, False])
def test_a_clash_in_a_batch_affects_only_the_command_that_clashed(
    service: TaskService, database_url: str, same_body: bool
) -> None:
    rival_body = order(idempotency_key="race")
    if not same_body:
        rival_body = order(idempotency_key="race", priority=Priority.LOW)
    late = racing(database_url, lambda: service.submit(rival_body))
    try:
        results = late.execute(
            [order(workflow_instance_id="x"), order(idempotency_key="race"), order()]
        )
    finally:
        late.close()
    fresh_first, keyed, fresh_last = results
    assert isinstance(fresh_first, Outcome) and isinstance(fresh_last, Outcome)
    assert not fresh_first.replayed and not fresh_last.replayed
    if same_body:
        assert isinstance(keyed, Outcome) and keyed.replayed  # the winner's task
    else:
        assert isinstance(keyed, ValidationFailed)
        assert "different request" in str(keyed)
    events = submitted(service)
    assert len(events) == 3  # the rival's and the two fresh ones: nothing twice
    assert sum(1 for e in events if e.request_hash is not None) == 1


def test_a_cancel_that_clashes_with_a_report_is_retried_on_the_new_state(
    service: TaskService, database_url: str
) -> None:
    task = service.submit(order())
    started = RecordReport(task.task_id, 1, "started", "w-1", task.created_at)
    late = racing(database_url, lambda: service.record_reports([started]))
    try:
        (result,) = late.execute([CancelTask(task.task_id, ANONYMOUS, force=True)])
    finally:
        late.close()
    assert isinstance(result, Outcome) and result.status == "CANCELLED"
    history = [
        type(e).__name__ for _, e in service.read_log(0, 100) if e.originator_id == task.task_id
    ]
    assert history == ["Submitted", "Started", "Cancelled"]


def test_concurrent_submits_through_the_runtime_share_a_transaction(
    database_url: str, tmp_path: Path
) -> None:
    runtime = Runtime(Settings(database_url=database_url, var_dir=tmp_path, rate_limit="off"))
    runtime.open()
    try:
        service = runtime.service
        release, inside = threading.Event(), threading.Event()
        real_execute = service.execute
        calls: list[int] = []

        def held_execute(cmds: Any, atomic: bool = False) -> Any:
            calls.append(len(cmds))
            if len(calls) == 1:  # hold the first batch until the others are queued
                inside.set()
                assert release.wait(10)
            return real_execute(cmds, atomic)

        runtime.commits._execute = held_execute  # what the committer calls per batch
        outcomes: list[Outcome] = []
        threads = [
            threading.Thread(target=lambda: outcomes.append(runtime.submit(order())))
            for _ in range(10)
        ]
        threads[0].start()
        assert inside.wait(10)
        for thread in threads[1:]:
            thread.start()
        deadline = time.monotonic() + 10
        while runtime.commits._queue.qsize() < 9 and time.monotonic() < deadline:
            time.sleep(0.01)
        release.set()
        for thread in threads:
            thread.join(10)
        assert calls == [1, 9]
        assert len(outcomes) == 10
        # Read-your-writes held for every one of them.
        assert all(runtime.get_task(o.task_id) is not None for o in outcomes)
    finally:
        runtime.close()


def test_reports_that_clash_with_a_cancel_are_refused_whole_then_applied_on_fresh_state(
    service: TaskService, database_url: str
) -> None:
    task = service.submit(order())
    started = RecordReport(task.task_id, 1, "started", "w-1", task.created_at)
    late = racing(database_url, lambda: service.cancel(CancelTask(task.task_id, ANONYMOUS)))
    try:
        with pytest.raises(IntegrityError):  # the results consumer retries the batch
            late.record_reports([started])
        assert late.record_reports([started]) == 0  # stale after the cancel
        assert late.record_reports([started]) == 0  # redelivered: still stale
    finally:
        late.close()
    assert service.load(task.task_id).status.value == "CANCELLED"
