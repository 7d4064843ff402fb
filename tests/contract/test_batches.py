"""Group commit (commands/group_commit.py, commands/batch.py) and idempotent submits
(commands/idempotency.py): one transaction per batch, each command's own answer when
some of the batch fail, a retry that gets the original task, and races between replicas
that create one task. The same cases on every event store (tests/contract/conftest.py).
"""

from __future__ import annotations

import threading
from collections.abc import Collection
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import IntegrityError

from commands.errors import Conflict, NotFound, ValidationFailed
from commands.group_commit import GroupCommit
from commands.messages import CancelTask, Outcome, SubmitTask
from commands.service import TaskService
from domain.task import Task
from domain.values import ANONYMOUS, Priority
from tests.contract.conftest import OpenService
from tests.contract.support import ALICE, order, report


@pytest.fixture
def counting(service: TaskService, monkeypatch: pytest.MonkeyPatch) -> Any:
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


def keyed(key: str, **overrides: Any) -> SubmitTask:
    return order(idempotency_key=key, **overrides)


# -- group commit ----------------------------------------------------------------------


def test_a_mixed_batch_is_one_transaction_with_an_answer_per_command(counting: Any) -> None:
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


def test_commands_queued_during_a_batch_share_the_next_transaction(counting: Any) -> None:
    """The committer over the service, as ``serve`` runs it: while one batch is being
    saved the next gathers, and each caller gets its own answer."""
    release, inside = threading.Event(), threading.Event()
    sizes: list[int] = []

    def execute(cmds: Any) -> list[Outcome | Exception]:
        sizes.append(len(cmds))
        if len(sizes) == 1:  # hold the first batch until the others are queued
            inside.set()
            assert release.wait(10)
        return counting.execute(cmds)  # type: ignore[no-any-return]

    group: GroupCommit[Any, Outcome] = GroupCommit(execute)
    group.start()
    try:
        first = group.submit(order())
        assert inside.wait(10)
        queued = [group.submit(order(workflow_instance_id=f"wf-{n}")) for n in range(8)]
        queued.append(group.submit(order(definition_id="no-such-definition")))
        release.set()
        outcomes = [first.result(10), *(f.result(10) for f in queued[:-1])]
        with pytest.raises(NotFound):
            queued[-1].result(10)
    finally:
        group.stop()
    assert sizes == [1, 9] and counting.saves == 2
    assert len({o.task_id for o in outcomes}) == 9
    assert all(counting.load(o.task_id).status.value == "PENDING" for o in outcomes)


class RacingReplica(TaskService):
    """Between deciding a batch and saving it, another replica saves what ``rival`` says:
    the batch's save then hits the store's uniqueness (IntegrityError)."""

    name = TaskService.name  # eventsourcing names a subclass's tables after the class

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


@pytest.mark.parametrize("same_body", [True, False])
def test_a_clash_in_a_batch_affects_only_the_command_that_clashed(
    service: TaskService, open_service: OpenService, same_body: bool
) -> None:
    rival_body = keyed("race") if same_body else keyed("race", priority=Priority.LOW)
    late = open_service(RacingReplica, rival=lambda: service.submit(rival_body))
    fresh_first, clashed, fresh_last = late.execute(
        [order(workflow_instance_id="x"), keyed("race"), order()]
    )
    assert isinstance(fresh_first, Outcome) and isinstance(fresh_last, Outcome)
    assert not fresh_first.replayed and not fresh_last.replayed
    if same_body:
        assert isinstance(clashed, Outcome) and clashed.replayed  # the winner's task
    else:
        assert isinstance(clashed, ValidationFailed)
        assert "different request" in str(clashed)
    events = submitted(service)
    assert len(events) == 3  # the rival's and the two fresh ones: nothing twice
    assert sum(1 for e in events if e.request_hash is not None) == 1


def test_a_cancel_that_clashes_with_a_report_is_retried_on_the_new_state(
    service: TaskService, open_service: OpenService
) -> None:
    task = service.submit(order())
    started = report(task.task_id, 1, "started", at=task.created_at)
    late = open_service(RacingReplica, rival=lambda: service.record_reports([started]))
    (result,) = late.execute([CancelTask(task.task_id, ANONYMOUS, force=True)])
    assert isinstance(result, Outcome) and result.status == "CANCELLED"
    history = [
        type(e).__name__ for _, e in service.read_log(0, 100) if e.originator_id == task.task_id
    ]
    assert history == ["Submitted", "Started", "Cancelled"]


def test_reports_that_clash_with_a_cancel_are_refused_whole_then_applied_on_fresh_state(
    service: TaskService, open_service: OpenService
) -> None:
    task = service.submit(order())
    started = report(task.task_id, 1, "started", at=task.created_at)
    late = open_service(
        RacingReplica, rival=lambda: service.cancel(CancelTask(task.task_id, ANONYMOUS))
    )
    with pytest.raises(IntegrityError):  # the results consumer retries the batch
        late.record_reports([started])
    assert late.record_reports([started]) == 0  # stale after the cancel
    assert late.record_reports([started]) == 0  # redelivered: still stale
    assert service.load(task.task_id).status.value == "CANCELLED"


# -- idempotent submits ----------------------------------------------------------------


def test_the_same_key_twice_in_a_batch_makes_one_task(service: TaskService) -> None:
    a, b, c = service.execute([keyed("k"), keyed("k"), keyed("k", priority=Priority.HIGH)])
    assert isinstance(a, Outcome) and isinstance(b, Outcome)
    assert (a.task_id, a.replayed, b.replayed) == (b.task_id, False, True)
    assert isinstance(c, ValidationFailed)
    assert len(submitted(service)) == 1


def test_a_retry_returns_the_original_task_as_it_is_now(service: TaskService) -> None:
    first = service.submit(keyed("order-789"))
    again = service.submit(keyed("order-789"))
    assert (again.task_id, again.created_at, again.replayed) == (
        first.task_id,
        first.created_at,
        True,
    )
    with pytest.raises(ValidationFailed, match="different request"):
        service.submit(keyed("order-789", priority=Priority.HIGH))
    service.cancel(CancelTask(first.task_id, ANONYMOUS))
    assert service.submit(keyed("order-789")).status == "CANCELLED"
    other = service.submit(keyed("order-789", actor=ANONYMOUS))  # keys belong to a principal
    assert other.task_id != first.task_id and not other.replayed
    assert len(submitted(service)) == 2


def test_concurrent_duplicates_from_threads_create_one_task(service: TaskService) -> None:
    barrier = threading.Barrier(8)
    outcomes: list[Outcome] = []

    def submit() -> None:
        barrier.wait()
        outcomes.append(service.submit(keyed("threads")))

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(outcomes) == 8
    assert len({o.task_id for o in outcomes}) == 1
    assert sorted(o.replayed for o in outcomes) == [False] + [True] * 7
    assert service.repository.get(outcomes[0].task_id).version == 1


class LateReplica(TaskService):
    """Sees no task at first, and another replica saves the same task right after:
    exactly the race in which this replica's save hits the store's uniqueness."""

    name = TaskService.name

    def __init__(self, *args: Any, rival: TaskService, rival_cmd: SubmitTask, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._rival, self._rival_cmd, self.lookups = rival, rival_cmd, 0

    def load_many(self, ids: Collection[UUID]) -> dict[UUID, Task]:
        self.lookups += 1
        if self.lookups == 1:
            self._rival.submit(self._rival_cmd)  # commits between our check and our save
            return {}
        return super().load_many(ids)


@pytest.mark.parametrize("same_body", [True, False])
def test_losing_the_race_to_another_replica(
    service: TaskService, open_service: OpenService, same_body: bool
) -> None:
    rival_cmd = keyed("race") if same_body else keyed("race", priority=Priority.HIGH)
    late = open_service(LateReplica, rival=service, rival_cmd=rival_cmd)
    if same_body:
        outcome = late.submit(keyed("race"))
        assert outcome.replayed
        assert late.lookups == 2  # IntegrityError, then the winner was found
    else:
        with pytest.raises(ValidationFailed, match="different request"):
            late.submit(keyed("race"))
    winners = submitted(service)
    assert len(winners) == 1
    assert winners[0].priority == rival_cmd.priority.value


def test_the_service_refuses_an_unusable_key_itself(service: TaskService) -> None:
    """The API checks the header first; the service does not rely on it."""
    before = service.recorder.max_notification_id()
    for key in ("", "a b", "x" * 256):
        with pytest.raises(ValidationFailed, match="Idempotency-Key"):
            service.submit(keyed(key))
    results = service.submit_many([keyed("fine"), keyed("not fine")])
    assert isinstance(results[0], Outcome) and isinstance(results[1], ValidationFailed)
    assert service.recorder.max_notification_id() != before
