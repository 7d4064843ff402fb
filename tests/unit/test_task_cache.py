"""Unit tests of the task cache (commands/task_cache.py): pure logic, no store."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID, uuid4

from commands.task_cache import TaskCache
from domain.task import Task
from domain.values import Actor
from tests.fakes import FakeClock
from tests.unit.test_chain import DEFINITION

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
USER = Actor("alice", "jwt")


def committed(task_id: UUID | None = None) -> Task:
    """A new task as it is after its save: no pending events."""
    task = Task.submit(
        task_id=task_id or uuid4(), at=T0, actor=USER, definition=DEFINITION, input={"a": 1}
    )
    task.collect_events()
    return task


def test_a_kept_task_is_handed_out_as_a_copy_the_caller_may_change():
    cache = TaskCache()
    task = committed()
    cache.remember([task])
    copy = cache.take([task.id])[task.id]
    assert copy is not task and (copy.id, copy.version, copy.status) == (task.id, 1, task.status)
    copy.start(attempt=1, worker="w-1", at=T0, actor=USER)
    assert len(copy.pending_events) == 1
    again = cache.take([task.id])[task.id]
    assert (again.version, again.status.value, again.pending_events) == (1, "PENDING", [])
    assert again.chain_head == task.chain_head
    assert (cache.hits, cache.misses) == (2, 0)


def test_misses_are_counted_and_left_out():
    cache = TaskCache()
    kept = committed()
    cache.remember([kept])
    other = uuid4()
    assert set(cache.take([kept.id, other])) == {kept.id}
    assert (cache.hits, cache.misses) == (1, 1)


def test_finished_tasks_are_dropped_and_forget_drops_any():
    cache = TaskCache()
    done, forgotten = committed(), committed()
    cache.remember([done, forgotten])
    done.cancel(reason=None, force=False, at=T0, actor=USER)
    done.collect_events()
    cache.remember([done])
    cache.forget([forgotten.id, uuid4()])
    assert cache.take([done.id, forgotten.id]) == {}
    assert len(cache) == 0


def test_an_older_version_does_not_replace_a_newer_one():
    cache = TaskCache()
    task = committed()  # version 1
    newer = committed(task.id)
    newer.start(attempt=1, worker="w-1", at=T0, actor=USER)
    newer.collect_events()
    cache.remember([newer])
    cache.remember([task])  # a save that finished first, remembered late
    assert cache.take([task.id])[task.id].version == 2


def test_when_full_a_new_task_waits_unless_the_oldest_is_old():
    clock = FakeClock()
    cache = TaskCache(capacity=2, max_age=60.0, clock=clock)
    first, second, third = committed(), committed(), committed()
    cache.remember([first, second])
    cache.remember([third])  # full, and the oldest is young: not kept
    assert set(cache.take([first.id, second.id, third.id])) == {first.id, second.id}
    clock.now = 61.0
    cache.remember([third])  # the oldest is past its age: it makes room
    assert set(cache.take([first.id, second.id, third.id])) == {second.id, third.id}


def test_remembering_a_kept_task_again_renews_its_age():
    clock = FakeClock()
    cache = TaskCache(capacity=2, max_age=60.0, clock=clock)
    first, second = committed(), committed()
    cache.remember([first, second])
    clock.now = 50.0
    cache.remember([first])  # saved again: now the youngest
    clock.now = 61.0
    third = committed()
    cache.remember([third])  # second is the oldest now (age 61): evicted
    assert set(cache.take([first.id, second.id, third.id])) == {first.id, third.id}


def test_a_refused_save_empties_the_cache_and_pauses_it():
    clock = FakeClock()
    cache = TaskCache(pause=60.0, clock=clock)
    kept, later = committed(), committed()
    cache.remember([kept])
    cache.refused()  # another writer is about
    assert len(cache) == 0
    cache.remember([later])
    assert cache.take([kept.id, later.id]) == {} and len(cache) == 0
    clock.now = 60.0
    cache.remember([later])
    assert set(cache.take([later.id])) == {later.id}
