"""One batch of submits, cancels and requeues, decided in memory before a single save.

``decide`` runs each command against the aggregates it needs (loaded for the whole batch
at once) and says, per command, either its answer already (an error, an idempotent
replay) or which aggregate carries its new events. Commands on the same task act in
order on one copy of it, as if they had come one after the other: a second cancel of a
task in the same batch is a Conflict, exactly as it would be a moment later (and a cancel
after a requeue of it in the same batch cancels the requeued task).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from commands import idempotency
from commands.errors import CommandError, Conflict, NotFound, ValidationFailed
from commands.messages import CancelTask, Outcome, RequeueTask, SubmitTask
from domain.errors import IllegalTransition, TaskNotCancellable
from domain.task import Task
from domain.tenancy import visible

BatchCommand = SubmitTask | CancelTask | RequeueTask
Change = CancelTask | RequeueTask  # a command on an existing task
NewTask = Callable[[SubmitTask, UUID, str | None], Task]  # raises CommandError if refused


@dataclass
class Decision:
    """Per command: ``answers[i]`` if decided already, else ``changed[i]`` is its aggregate
    (several commands may share one); ``repeats[i] = j``: answer as ``j`` did, replayed."""

    answers: dict[int, Outcome | CommandError] = field(default_factory=dict)
    changed: dict[int, Task] = field(default_factory=dict)
    repeats: dict[int, int] = field(default_factory=dict)
    replays: dict[int, Task] = field(default_factory=dict)  # keyed retries of existing tasks

    def aggregates(self) -> list[Task]:
        """Each changed aggregate once, in the order of the commands."""
        unique: dict[UUID, Task] = {}
        for task in self.changed.values():
            unique.setdefault(task.id, task)
        return list(unique.values())


def ids_to_load(cmds: Sequence[BatchCommand]) -> set[UUID]:
    """The existing aggregates the batch may need: changed tasks and keyed submits."""
    ids: set[UUID] = set()
    for cmd in cmds:
        if isinstance(cmd, Change):
            ids.add(cmd.task_id)
        elif cmd.idempotency_key is not None and idempotency.valid_key(cmd.idempotency_key):
            ids.add(idempotency.task_id_for(cmd, cmd.idempotency_key))
    return ids


def decide(
    cmds: Sequence[BatchCommand],
    existing: Mapping[UUID, Task],
    new_task: NewTask,
    new_id: Callable[[], UUID],
    change: Callable[[Task, Change], None],
) -> Decision:
    decision = Decision()
    keyed: dict[UUID, tuple[int, str]] = {}  # task id -> (first index, fingerprint)
    current: dict[UUID, Task] = dict(existing)
    for index, cmd in enumerate(cmds):
        try:
            if isinstance(cmd, Change):
                task = current.get(cmd.task_id)
                if task is None or not visible(task.tenant, cmd.tenant):
                    raise NotFound(f"task {cmd.task_id} not found", {"field": "taskId"})
                change(task, cmd)
                decision.changed[index] = task
                continue
            key = cmd.idempotency_key
            if key is None:
                decision.changed[index] = new_task(cmd, new_id(), None)
                continue
            if not idempotency.valid_key(key):
                raise ValidationFailed(
                    "Idempotency-Key must be 1 to 255 visible ASCII characters",
                    {"field": "Idempotency-Key"},
                )
            task_id, print_ = idempotency.task_id_for(cmd, key), idempotency.fingerprint(cmd)
            if task_id in keyed:  # the same key earlier in this batch
                earlier, earlier_print = keyed[task_id]
                if earlier_print != print_:
                    raise key_reused(task_id)
                decision.repeats[index] = earlier
                continue
            keyed[task_id] = (index, print_)
            found = current.get(task_id)
            if found is not None:
                if found.tenant != cmd.tenant:  # cannot happen (ids are per tenant): guard
                    raise key_reused(None)
                if found.request_hash != print_:
                    raise key_reused(task_id)
                decision.replays[index] = found
                continue
            task = new_task(cmd, task_id, print_)
            current[task_id] = task
            decision.changed[index] = task
        except CommandError as exc:
            decision.answers[index] = exc
    return decision


def change_task(task: Task, cmd: Change, at: datetime) -> None:
    """Cancel or requeue ``task`` for ``cmd``; Conflict if its status does not allow it."""
    if isinstance(cmd, CancelTask):
        cancel_task(task, cmd, at)
    else:
        requeue_task(task, cmd, at)


def requeue_task(task: Task, cmd: RequeueTask, at: datetime) -> None:
    """Requeue ``task`` for ``cmd``; Conflict unless it is FAILED, TIMED_OUT or CANCELLED."""
    try:
        task.requeue(reason=cmd.reason, at=at, actor=cmd.actor)
    except IllegalTransition as exc:
        raise Conflict(
            f"task {cmd.task_id} is {exc.status} and cannot be retried "
            "(only FAILED, TIMED_OUT and CANCELLED tasks can)",
            {"status": exc.status},
        ) from None


def cancel_task(task: Task, cmd: CancelTask, at: datetime) -> None:
    """Cancel ``task`` for ``cmd``; Conflict if it has finished."""
    try:
        task.cancel(reason=cmd.reason, force=cmd.force, at=at, actor=cmd.actor)
    except TaskNotCancellable as exc:
        raise Conflict(
            f"task {cmd.task_id} is {exc.status} and cannot be cancelled",
            {"status": exc.status},
        ) from None


def key_reused(task_id: UUID | None) -> ValidationFailed:
    """The key named another request's task (``task_id``: None, never named to a caller
    of another tenant)."""
    details = {"field": "Idempotency-Key"}
    if task_id is not None:
        details["taskId"] = str(task_id)
    return ValidationFailed("Idempotency-Key was already used with a different request", details)
