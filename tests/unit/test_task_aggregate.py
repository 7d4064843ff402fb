"""Unit tests of the Task aggregate: transitions, guards, topics, replay and storage round trip."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import Mapper
from eventsourcing.utils import get_topic, resolve_topic
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from commands.transcoder import PayloadSafeTranscoder
from domain.definition import TaskDefinition
from domain.errors import IllegalTransition, StaleResult, TaskNotCancellable
from domain.task import Task
from domain.values import Actor, Priority, RetryOverrides, RetryPolicy, TaskStatus, TaskType

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
USER = Actor(id="alice", kind="jwt")
WORKER = Actor(id="worker-7", kind="worker")
TASK_ID = UUID("00000000-0000-4000-8000-000000000001")
HANDLER = "workers.handlers.orders:calculate_order_total"


def make_definition(**overrides: Any) -> TaskDefinition:
    doc: dict[str, Any] = {
        "id": "calc",
        "name": "Calc",
        "description": "test definition",
        "type": "AUTOMATED",
        "version": "2.0.0",
        "timeout": 60_000,
        "retryPolicy": {"maxRetries": 3, "retryInterval": 1_000, "backoffMultiplier": 2},
        "executionConfig": {"executor": "standard-executor", "handler": HANDLER},
    }
    doc.update(overrides)
    return TaskDefinition.from_document(doc)


DEFINITION = make_definition()


def submitted(
    task_id: UUID = TASK_ID, at: datetime = T0, definition: TaskDefinition = DEFINITION, **kw: Any
) -> Task:
    kw.setdefault("input", {"orderId": "ORD-1"})
    return Task.submit(task_id=task_id, at=at, actor=USER, definition=definition, **kw)


def running(at: datetime = T0) -> Task:
    task = submitted(at=at)
    task.start(attempt=1, worker="w-1", at=at + timedelta(seconds=1), actor=WORKER)
    return task


def completed() -> Task:
    task = running()
    task.complete(attempt=1, output={"total": 1}, at=T0 + timedelta(seconds=2), actor=WORKER)
    return task


def failed() -> Task:
    """Failed for good: the error is not retryable."""
    task = running()
    task.fail(
        attempt=1,
        error_type="Boom",
        error_message="it broke",
        at=T0 + timedelta(2),
        actor=WORKER,
        retryable=False,
    )
    return task


def cancelled() -> Task:
    task = submitted()
    task.cancel(reason="no longer needed", force=False, at=T0 + timedelta(seconds=3), actor=USER)
    return task


def snapshot(task: Task) -> tuple[dict[str, Any], int, list[Any]]:
    return task.state(), task.version, list(task.pending_events)


def assert_unchanged(task: Task, before: tuple[dict[str, Any], int, list[Any]]) -> None:
    state, version, pending = before
    assert task.state() == state
    assert task.version == version
    assert list(task.pending_events) == pending


def pending(task: Task) -> list[Any]:
    """The aggregate's uncollected events, typed loosely for attribute access."""
    return list(task.pending_events)


def replay(events: list[Any]) -> Task:
    aggregate: Any = None
    for event in events:
        aggregate = event.mutate(aggregate)
    assert isinstance(aggregate, Task)
    return aggregate


def make_mapper() -> Mapper[UUID]:
    """The mapper TaskService stores events with."""
    return Mapper(transcoder=PayloadSafeTranscoder())


# -- transitions ----------------------------------------------------------------------------


def test_submit_gives_a_pending_task_with_the_definition_settings():
    task = submitted(input={"orderId": "ORD-9"}, workflow_instance_id="wf-1")

    assert task.id == TASK_ID
    assert task.version == 1
    assert task.status is TaskStatus.PENDING
    assert task.attempt == 0
    assert task.definition_id == "calc"
    assert task.definition_version == "2.0.0"
    assert task.task_type is TaskType.AUTOMATED
    assert task.workflow_instance_id == "wf-1"
    assert task.input == {"orderId": "ORD-9"}
    assert task.priority is Priority.MEDIUM
    assert task.timeout_ms == 60_000
    assert task.retry_policy == RetryPolicy(3, 1_000, 2.0)
    # Only the binding and the pool are copied, not the rest of executionConfig.
    assert task.execution == {"handler": HANDLER, "executor": "standard-executor"}
    assert task.output is None
    assert task.error is None
    assert task.worker is None
    assert task.started_at is None
    assert task.ended_at is None
    assert task.cancel_reason is None
    assert task.created_at == T0
    assert task.updated_at == T0
    [event] = task.pending_events
    assert type(event) is Task.Submitted


def test_submit_of_an_integration_definition_copies_the_endpoint():
    definition = make_definition(
        type="INTEGRATION", executionConfig={"endpoint": "http://pay/x", "executor": "e"}
    )
    task = submitted(definition=definition, priority=Priority.CRITICAL)
    assert task.task_type is TaskType.INTEGRATION
    assert task.execution == {"endpoint": "http://pay/x", "executor": "e"}  # its pool too
    assert task.priority is Priority.CRITICAL


def test_start_makes_the_task_running():
    task = submitted()
    at = T0 + timedelta(seconds=5)
    task.start(attempt=1, worker="host-1/pid-2", at=at, actor=WORKER)

    assert task.status is TaskStatus.RUNNING
    assert task.attempt == 1
    assert task.worker == "host-1/pid-2"
    assert task.started_at == at
    assert task.ended_at is None
    assert task.updated_at == at
    assert task.created_at == T0
    assert task.version == 2
    assert type(task.pending_events[-1]) is Task.Started


def test_complete_records_the_output():
    task = running()
    at = T0 + timedelta(seconds=9)
    task.complete(attempt=1, output={"total": 50.73}, at=at, actor=WORKER)

    assert task.status is TaskStatus.COMPLETED
    assert task.output == {"total": 50.73}
    assert task.error is None
    assert task.ended_at == at
    assert task.updated_at == at
    assert task.attempt == 1
    assert task.version == 3


def test_fail_records_the_error():
    task = running()
    at = T0 + timedelta(seconds=9)
    task.fail(
        attempt=1,
        error_type="ValueError",
        error_message="bad input",
        at=at,
        actor=WORKER,
        retryable=False,
    )

    assert task.status is TaskStatus.FAILED
    assert task.error == {"type": "ValueError", "message": "bad input"}
    assert task.output is None
    assert task.ended_at == at
    assert task.version == 3


@pytest.mark.parametrize("make", [submitted, running], ids=["from-pending", "from-running"])
@pytest.mark.parametrize("force", [False, True])
def test_cancel_of_an_unfinished_task(make: Callable[[], Task], force: bool):
    task = make()
    version = task.version
    at = T0 + timedelta(minutes=1)
    task.cancel(reason="changed my mind", force=force, at=at, actor=USER)

    assert task.status is TaskStatus.CANCELLED
    assert task.cancel_reason == "changed my mind"
    assert task.ended_at == at
    assert task.version == version + 1
    event = pending(task)[-1]
    assert type(event) is Task.Cancelled
    assert event.force is force


def test_cancel_without_reason():
    task = submitted()
    task.cancel(reason=None, force=False, at=T0, actor=USER)
    assert task.status is TaskStatus.CANCELLED
    assert task.cancel_reason is None


@pytest.mark.parametrize(
    ("make", "status"),
    [
        (completed, TaskStatus.COMPLETED),
        (failed, TaskStatus.FAILED),
        (cancelled, TaskStatus.CANCELLED),
    ],
)
def test_cancel_of_a_finished_task_is_refused(make: Callable[[], Task], status: TaskStatus):
    task = make()
    before = snapshot(task)
    with pytest.raises(TaskNotCancellable) as info:
        task.cancel(reason="late", force=True, at=T0 + timedelta(hours=1), actor=USER)
    assert info.value.status == status
    assert info.value.task_id == str(TASK_ID)
    assert str(TASK_ID) in str(info.value)
    assert_unchanged(task, before)


def _start(attempt: int, worker: str = "w-2") -> Callable[[Task], None]:
    return lambda t: t.start(attempt=attempt, worker=worker, at=T0 + timedelta(1), actor=WORKER)


def _complete(attempt: int) -> Callable[[Task], None]:
    return lambda t: t.complete(attempt=attempt, output=1, at=T0 + timedelta(1), actor=WORKER)


def _fail(attempt: int) -> Callable[[Task], None]:
    return lambda t: t.fail(
        attempt=attempt, error_type="E", error_message="m", at=T0 + timedelta(1), actor=WORKER
    )


STALE_CASES = [
    ("start-twice-same-attempt-same-worker", running, _start(1, worker="w-1")),
    ("start-twice-next-attempt", running, _start(2)),
    ("start-attempt-0", submitted, _start(0)),
    ("start-attempt-2", submitted, _start(2)),
    ("start-attempt-negative", submitted, _start(-1)),
    ("complete-when-pending", submitted, _complete(1)),
    ("complete-when-pending-attempt-0", submitted, _complete(0)),
    ("fail-when-pending", submitted, _fail(1)),
    ("complete-wrong-attempt", running, _complete(2)),
    ("complete-previous-attempt", running, _complete(0)),
    ("fail-wrong-attempt", running, _fail(2)),
] + [
    (f"{action_name}-after-{make.__name__}", make, action)
    for make in (completed, failed, cancelled)
    for action_name, action in (
        ("start", _start(1)),
        ("start-next", _start(2)),
        ("complete", _complete(1)),
        ("fail", _fail(1)),
    )
]


@pytest.mark.parametrize(
    ("make", "action"), [case[1:] for case in STALE_CASES], ids=[case[0] for case in STALE_CASES]
)
def test_stale_or_repeated_reports_raise_stale_result_and_change_nothing(
    make: Callable[[], Task], action: Callable[[Task], None]
):
    task = make()
    before = snapshot(task)
    with pytest.raises(StaleResult) as info:
        action(task)
    assert not isinstance(info.value, TaskNotCancellable)
    assert isinstance(info.value, IllegalTransition)
    assert info.value.status == before[0]["status"]
    assert info.value.task_id == str(TASK_ID)
    assert_unchanged(task, before)


def test_second_complete_is_stale():
    task = completed()
    before = snapshot(task)
    with pytest.raises(StaleResult):
        task.complete(attempt=1, output={"other": True}, at=T0 + timedelta(3), actor=WORKER)
    assert task.output == {"total": 1}
    assert_unchanged(task, before)


# -- per-task overrides --------------------------------------------------------------------


def test_per_task_timeout_and_retry_policy_override_the_definition():
    given = RetryOverrides(max_retries=7, retry_interval_ms=250, backoff_multiplier=1.5)
    task = submitted(timeout_ms=5_000, retry_policy=given)
    assert task.timeout_ms == 5_000
    assert task.retry_policy == RetryPolicy(7, 250, 1.5)
    event = pending(task)[0]
    assert event.timeout_ms == 5_000
    assert event.retry_policy == {
        "max_retries": 7,
        "retry_interval_ms": 250,
        "backoff_multiplier": 1.5,
        "max_interval_ms": None,
        "non_retryable_errors": [],
    }


def test_only_the_given_override_replaces_the_definition_value():
    task = submitted(timeout_ms=1)
    assert task.timeout_ms == 1
    assert task.retry_policy == DEFINITION.retry_policy

    task = submitted(retry_policy=RetryOverrides(max_retries=0))
    assert task.timeout_ms == DEFINITION.timeout_ms
    assert task.retry_policy == RetryPolicy(0, 1_000, 2.0)  # the rest: the definition's


def test_defaults_come_from_the_definition():
    definition = make_definition(
        timeout=123_456, retryPolicy={"maxRetries": 5, "retryInterval": 42, "backoffMultiplier": 3}
    )
    task = submitted(definition=definition)
    assert task.timeout_ms == 123_456
    assert task.retry_policy == RetryPolicy(5, 42, 3.0)
    assert pending(task)[0].retry_policy == {
        "max_retries": 5,
        "retry_interval_ms": 42,
        "backoff_multiplier": 3.0,
        "max_interval_ms": None,
        "non_retryable_errors": [],
    }


# -- pinned topics ---------------------------------------------------------------------------

PINNED_TOPICS = [
    (Task, "taskexec.task.v1"),
    (Task.Submitted, "taskexec.task.submitted.v1"),
    (Task.Started, "taskexec.task.started.v1"),
    (Task.Completed, "taskexec.task.completed.v1"),
    (Task.Failed, "taskexec.task.failed.v1"),
    (Task.Cancelled, "taskexec.task.cancelled.v1"),
    (Task.RetryScheduled, "taskexec.task.retry-scheduled.v1"),
    (Task.TimedOut, "taskexec.task.timed-out.v1"),
    (Task.Requeued, "taskexec.task.requeued.v1"),
]


def test_the_library_derived_created_event_has_its_own_topic():
    # Task.Created is declared so the library does not derive one that would inherit a
    # base topic; it is never stored, but its topic must not collide with another.
    assert Task.Created.__dict__["TOPIC"] == "taskexec.task.created.v1"
    assert resolve_topic("taskexec.task.created.v1") is Task.Created
    assert "TOPIC" not in Task.Event.__dict__


@pytest.mark.parametrize(
    "payload",
    [
        {"_type_": "nope", "_data_": "x"},
        {"_type_": "decimal_str", "_data_": "1.5"},
        {"_type_": "datetime_iso", "_data_": "2024-01-01T00:00:00"},
        [{"timestamp": "2024-01-01T00:00:00+00:00"}],
    ],
)
def test_user_payloads_that_look_like_type_markers_round_trip_verbatim(payload: Any):
    task = submitted(input={"meta": payload})
    task.start(attempt=1, worker="w", at=T0, actor=WORKER)
    task.complete(attempt=1, output={"echo": payload}, at=T0, actor=WORKER)
    mapper = make_mapper()
    decoded: list[Any] = [mapper.to_domain_event(mapper.to_stored_event(e)) for e in pending(task)]
    assert decoded[0].input == {"meta": payload}
    assert decoded[2].output == {"echo": payload}
    assert decoded[0].timestamp == T0


@pytest.mark.parametrize(("cls", "topic"), PINNED_TOPICS, ids=[topic for _, topic in PINNED_TOPICS])
def test_topics_are_pinned_and_resolve_back(cls: type, topic: str):
    assert cls.__dict__["TOPIC"] == topic  # set on the class itself, not inherited
    assert get_topic(cls) == topic
    assert resolve_topic(topic) is cls


def test_all_pinned_topics_are_distinct():
    topics = [topic for _, topic in PINNED_TOPICS] + [Task.Created.TOPIC]
    assert len(set(topics)) == len(topics)


def test_stored_events_carry_the_pinned_topics():
    task = failed()
    mapper = make_mapper()
    stored = [mapper.to_stored_event(e) for e in task.collect_events()]
    assert [s.topic for s in stored] == [
        "taskexec.task.submitted.v1",
        "taskexec.task.started.v1",
        "taskexec.task.failed.v1",
    ]
    assert task.pending_events == []
    submitted_event: Any = mapper.to_domain_event(stored[0])
    assert submitted_event.originator_topic == "taskexec.task.v1"


# -- deterministic event bodies -------------------------------------------------------------


def test_event_bodies_come_from_the_arguments():
    task_id = uuid4()
    times = [T0 + timedelta(seconds=s) for s in (0, 1, 2)]
    task = submitted(task_id=task_id, at=times[0])
    task.start(attempt=1, worker="w", at=times[1], actor=WORKER)
    task.complete(attempt=1, output=[1, 2], at=times[2], actor=WORKER)
    events: list[Any] = list(task.collect_events())

    assert [e.timestamp for e in events] == times
    assert [e.originator_id for e in events] == [task_id] * 3
    assert [e.originator_version for e in events] == [1, 2, 3]
    assert [e.actor for e in events] == [USER.as_dict(), WORKER.as_dict(), WORKER.as_dict()]
    assert events[0].definition_id == "calc"
    assert events[0].task_type == "AUTOMATED"
    assert events[0].priority == "MEDIUM"
    assert events[1].attempt == 1
    assert events[1].worker == "w"
    assert events[2].output == [1, 2]


def test_same_arguments_give_equal_events():
    def history() -> list[Any]:
        task = submitted(at=T0)
        task.start(attempt=1, worker="w", at=T0 + timedelta(1), actor=WORKER)
        task.fail(attempt=1, error_type="E", error_message="m", at=T0 + timedelta(2), actor=WORKER)
        return list(task.collect_events())

    assert history() == history()


def test_non_utc_timestamps_are_kept_as_given():
    at = datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    task = submitted(at=at)
    assert pending(task)[0].timestamp == at
    assert task.created_at.utcoffset() == timedelta(hours=2)


def test_replay_and_mapper_round_trip_of_a_simple_history():
    task = running()
    task.complete(attempt=1, output={"a": [1, "x", None]}, at=T0 + timedelta(3), actor=WORKER)
    events: list[Any] = list(task.collect_events())
    assert replay(events).state() == task.state()
    mapper = make_mapper()
    decoded = [mapper.to_domain_event(mapper.to_stored_event(e)) for e in events]
    assert decoded == events
    assert replay(decoded).state() == task.state()


# -- stateful property: the aggregate against a reference model -----------------------------

json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(alphabet="abcxyz", min_size=1, max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
steps = st.timedeltas(min_value=timedelta(0), max_value=timedelta(hours=2))
attempt_offsets = st.integers(min_value=-2, max_value=2)


class TaskMachine(RuleBasedStateMachine):
    """Random command sequences; a tiny model says which ones are legal."""

    def __init__(self) -> None:
        super().__init__()
        self.task: Task
        self.events: list[Any] = []
        self.now = T0
        # the reference model
        self.status = TaskStatus.PENDING
        self.attempt = 0
        self.worker: str | None = None
        self.version = 0
        self.base = 0  # attempts before the retry policy's current round (a requeue's)
        self.expected: dict[str, Any] = {}

    @initialize(
        task_id=st.uuids(),
        start=st.datetimes(
            min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
        ),
        priority=st.sampled_from(Priority),
        timeout_ms=st.none() | st.integers(1, 10**9),
        input=st.dictionaries(st.text(alphabet="abcxyz", min_size=1, max_size=4), json_values),
    )
    def submit(
        self,
        task_id: UUID,
        start: datetime,
        priority: Priority,
        timeout_ms: int | None,
        input: dict[str, Any],
    ) -> None:
        self.now = start
        self.task = Task.submit(
            task_id=task_id,
            at=start,
            actor=USER,
            definition=DEFINITION,
            input=input,
            priority=priority,
            timeout_ms=timeout_ms,
        )
        self.version = 1
        self.expected = {
            "id": str(task_id),
            "input": input,
            "priority": priority.value,
            "timeout_ms": timeout_ms if timeout_ms is not None else DEFINITION.timeout_ms,
            "created_at": start,
            "updated_at": start,
            "output": None,
            "error": None,
            "worker": None,
            "started_at": None,
            "ended_at": None,
            "cancel_reason": None,
            "next_attempt_at": None,
        }
        self._collect(1)

    # helpers

    def _tick(self, step: timedelta) -> datetime:
        self.now += step
        return self.now

    def _collect(self, count: int) -> None:
        new = list(self.task.collect_events())
        assert len(new) == count
        self.events.extend(new)

    def _accepted(self, event_class: type, at: datetime) -> None:
        self.version += 1
        self.expected["updated_at"] = at
        self._collect(1)
        event: Any = self.events[-1]
        assert event.originator_version == self.version
        assert event.timestamp == at
        assert type(event) is event_class

    def _refused(self, error: type[Exception], act: Callable[[], None]) -> None:
        before = snapshot(self.task)
        try:
            act()
        except error as exc:
            assert isinstance(exc, IllegalTransition)
            assert exc.status == self.status
        else:
            raise AssertionError(f"{error.__name__} expected in status {self.status}")
        assert_unchanged(self.task, before)

    # rules

    @rule(offset=attempt_offsets, worker=st.text(min_size=1, max_size=8), step=steps)
    def start(self, offset: int, worker: str, step: timedelta) -> None:
        attempt = self.attempt + offset
        at = self._tick(step)

        def act() -> None:
            self.task.start(attempt=attempt, worker=worker, at=at, actor=WORKER)

        first = self.status is TaskStatus.PENDING and attempt == self.attempt + 1
        redelivered = (
            self.status is TaskStatus.RUNNING and attempt == self.attempt and worker != self.worker
        )
        if first or redelivered:
            act()
            self.status = TaskStatus.RUNNING
            self.attempt = attempt
            self.worker = worker
            self.expected.update(worker=worker, started_at=at, ended_at=None, next_attempt_at=None)
            self._accepted(Task.Started, at)
        else:
            self._refused(StaleResult, act)

    @rule(offset=attempt_offsets, output=json_values, step=steps)
    def complete(self, offset: int, output: Any, step: timedelta) -> None:
        attempt = self.attempt + offset
        at = self._tick(step)

        def act() -> None:
            self.task.complete(attempt=attempt, output=output, at=at, actor=WORKER)

        if self.status is TaskStatus.RUNNING and attempt == self.attempt:
            act()
            self.status = TaskStatus.COMPLETED
            self.expected.update(output=output, ended_at=at)
            self._accepted(Task.Completed, at)
        else:
            self._refused(StaleResult, act)

    @rule(
        offset=attempt_offsets,
        error_type=st.sampled_from(["TIMEOUT", "E"]) | st.text(min_size=1, max_size=10),
        message=st.text(max_size=20),
        retryable=st.booleans(),
        step=steps,
    )
    def fail(
        self, offset: int, error_type: str, message: str, retryable: bool, step: timedelta
    ) -> None:
        attempt = self.attempt + offset
        at = self._tick(step)

        def act() -> None:
            self.task.fail(
                attempt=attempt,
                error_type=error_type,
                error_message=message,
                at=at,
                actor=WORKER,
                retryable=retryable,
            )

        if self.status is TaskStatus.RUNNING and attempt == self.attempt:
            act()
            policy = DEFINITION.retry_policy  # 3 retries, 1 s, x2, counted from the round
            in_round = attempt - self.base
            if retryable and in_round <= policy.max_retries:
                delay = timedelta(milliseconds=1000 * 2 ** (in_round - 1))
                self.status = TaskStatus.PENDING
                self.expected.update(
                    error={"type": error_type, "message": message},
                    ended_at=at,
                    next_attempt_at=at + delay,
                )
                self._accepted(Task.RetryScheduled, at)
            elif error_type == "TIMEOUT":
                self.status = TaskStatus.TIMED_OUT
                self.expected.update(error={"type": "TIMEOUT", "message": message}, ended_at=at)
                self._accepted(Task.TimedOut, at)
            else:
                self.status = TaskStatus.FAILED
                self.expected.update(error={"type": error_type, "message": message}, ended_at=at)
                self._accepted(Task.Failed, at)
        else:
            self._refused(StaleResult, act)

    @rule(reason=st.none() | st.text(max_size=20), force=st.booleans(), step=steps)
    def cancel(self, reason: str | None, force: bool, step: timedelta) -> None:
        at = self._tick(step)

        def act() -> None:
            self.task.cancel(reason=reason, force=force, at=at, actor=USER)

        if self.status in (TaskStatus.PENDING, TaskStatus.RUNNING):
            act()
            self.status = TaskStatus.CANCELLED
            self.expected.update(cancel_reason=reason, ended_at=at, next_attempt_at=None)
            self._accepted(Task.Cancelled, at)
        else:
            self._refused(TaskNotCancellable, act)

    @rule(reason=st.none() | st.text(max_size=20), step=steps)
    def requeue(self, reason: str | None, step: timedelta) -> None:
        at = self._tick(step)

        def act() -> None:
            self.task.requeue(reason=reason, at=at, actor=USER)

        if self.status in (TaskStatus.FAILED, TaskStatus.TIMED_OUT, TaskStatus.CANCELLED):
            act()
            self.status = TaskStatus.PENDING
            self.base = self.attempt  # the next attempt is the first of a new round
            self.expected.update(error=None, cancel_reason=None, next_attempt_at=None)
            self._accepted(Task.Requeued, at)
            self.expected.update(retry_base=self.base, requeued_version=self.version)
        else:
            self._refused(IllegalTransition, act)

    # invariants

    @invariant()
    def matches_the_model(self) -> None:
        state = self.task.state()
        assert state["status"] == self.status.value
        assert state["attempt"] == self.attempt
        assert state["version"] == self.version == len(self.events)
        for key, value in self.expected.items():
            assert state[key] == value, key

    @invariant()
    def replay_gives_the_same_state(self) -> None:
        assert replay(self.events).state() == self.task.state()

    @invariant()
    def stored_and_decoded_events_replay_to_the_same_state(self) -> None:
        mapper = make_mapper()
        stored = [mapper.to_stored_event(e) for e in self.events]
        assert [s.originator_version for s in stored] == list(range(1, len(stored) + 1))
        decoded = [mapper.to_domain_event(s) for s in stored]
        assert [type(e) for e in decoded] == [type(e) for e in self.events]
        assert replay(decoded).state() == self.task.state()


TaskMachine.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_task_state_machine = TaskMachine.TestCase
