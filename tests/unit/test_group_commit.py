"""The group committer's own logic, with a recording fake in place of the event store."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence

import pytest

from commands.group_commit import CommitterStopped, GroupCommit


class Store:
    """Records each batch; ``gate`` holds a batch until the test lets it go."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def execute(self, commands: Sequence[int]) -> list[int | Exception]:
        self.entered.set()
        assert self.gate.wait(10)
        self.batches.append(list(commands))
        if -1 in commands:
            raise ConnectionError("database went away")
        return [ValueError(f"refused {c}") if c % 7 == 0 else c * 10 for c in commands]


@pytest.fixture
def store() -> Store:
    return Store()


@pytest.fixture
def committer(store: Store) -> Iterator[GroupCommit[int, int]]:
    group: GroupCommit[int, int] = GroupCommit(store.execute, max_batch=50)
    group.start()
    yield group
    group.stop()


def test_a_lone_command_is_executed_at_once_alone(
    store: Store, committer: GroupCommit[int, int]
) -> None:
    assert committer.submit(3).result(5) == 30
    assert store.batches == [[3]]


def test_commands_arriving_during_a_batch_go_together_in_the_next_one(
    store: Store, committer: GroupCommit[int, int]
) -> None:
    store.gate.clear()
    first = committer.submit(1)
    assert store.entered.wait(5)  # batch [1] is being "saved"
    waiting = [committer.submit(n) for n in range(2, 6)]
    store.gate.set()
    assert first.result(5) == 10
    assert [f.result(5) for f in waiting] == [20, 30, 40, 50]
    assert store.batches == [[1], [2, 3, 4, 5]]
    assert (committer.batches, committer.commands) == (2, 5)


def test_a_batch_never_exceeds_its_maximum(store: Store) -> None:
    group: GroupCommit[int, int] = GroupCommit(store.execute, max_batch=3)
    group.start()
    try:
        store.gate.clear()
        futures = [group.submit(1)]
        assert store.entered.wait(5)
        values = [2, 3, 4, 5, 6, 8, 9]
        futures += [group.submit(n) for n in values]
        store.gate.set()
        assert [f.result(5) for f in futures] == [n * 10 for n in [1, *values]]
    finally:
        group.stop()
    assert store.batches == [[1], [2, 3, 4], [5, 6, 8], [9]]


def test_each_command_gets_its_own_answer_when_one_is_refused(
    store: Store, committer: GroupCommit[int, int]
) -> None:
    store.gate.clear()
    first = committer.submit(1)
    assert store.entered.wait(5)
    futures = {n: committer.submit(n) for n in (6, 7, 8)}
    store.gate.set()
    assert first.result(5) == 10
    assert futures[6].result(5) == 60
    assert futures[8].result(5) == 80
    with pytest.raises(ValueError, match="refused 7"):
        futures[7].result(5)
    assert store.batches == [[1], [6, 7, 8]]


def test_a_failing_batch_fails_every_command_in_it_and_the_next_batch_runs(
    store: Store, committer: GroupCommit[int, int]
) -> None:
    store.gate.clear()
    first = committer.submit(1)
    assert store.entered.wait(5)
    doomed = [committer.submit(n) for n in (2, -1, 3)]
    store.gate.set()
    assert first.result(5) == 10
    for future in doomed:
        with pytest.raises(ConnectionError):
            future.result(5)
    assert committer.submit(4).result(5) == 40


def test_after_commit_hook_runs_once_per_batch(store: Store) -> None:
    calls: list[int] = []
    group: GroupCommit[int, int] = GroupCommit(
        store.execute, on_committed=lambda: calls.append(len(store.batches))
    )
    group.start()
    try:
        assert group.submit(1).result(5) == 10
        assert group.submit(2).result(5) == 20
    finally:
        group.stop()
    assert calls == [1, 2]


def test_a_stopped_committer_refuses_at_once(store: Store) -> None:
    group: GroupCommit[int, int] = GroupCommit(store.execute)
    with pytest.raises(CommitterStopped):  # never started
        group.submit(1).result(1)
    group.start()
    group.stop()
    with pytest.raises(CommitterStopped):
        group.submit(2).result(1)


def test_stop_finishes_what_was_queued(store: Store) -> None:
    group: GroupCommit[int, int] = GroupCommit(store.execute)
    group.start()
    store.gate.clear()
    first = group.submit(1)
    assert store.entered.wait(5)
    queued = group.submit(2)
    stopper = threading.Thread(target=group.stop)
    stopper.start()
    store.gate.set()
    stopper.join(5)
    assert (first.result(1), queued.result(1)) == (10, 20)


async def test_a_coroutine_waits_without_a_thread(committer: GroupCommit[int, int]) -> None:
    results = await asyncio.gather(*(asyncio.wrap_future(committer.submit(n)) for n in (1, 2, 3)))
    assert results == [10, 20, 30]
