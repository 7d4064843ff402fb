"""ReadFence (api/read_fence.py): which reads wait for the read model, and for what."""

from __future__ import annotations

import logging

import pytest

from api.read_fence import ReadFence
from projections.runner import ProjectionStopped


class Runner:
    """A runner whose position moves only when told; records what was waited for."""

    def __init__(self, position: int = 0, fails: BaseException | None = None) -> None:
        self.position = position
        self.waited: list[int] = []
        self._fails = fails

    def wait_for(self, position: int, timeout: float, poke: bool = True) -> None:
        self.waited.append(position)
        if self._fails is not None:
            raise self._fails
        self.position = max(self.position, position)


def fence(runner: Runner, head: int = 0) -> ReadFence:
    return ReadFence(runner, lambda: head, timeout=5.0)


def test_answered_is_the_highest_position_whatever_the_order() -> None:
    f = fence(Runner())
    for position in (4, 9, 7):
        f.answering(position)
    assert f.answered == 9


def test_a_list_waits_for_every_answered_submit_and_only_when_behind() -> None:
    runner = Runner(position=5)
    f = fence(runner)
    f.answering(5)
    f.before_list()
    assert runner.waited == []  # caught up: no wait, no poke
    f.answering(8)
    f.before_list()
    assert runner.waited == [8]


def test_a_miss_made_behind_the_head_waits_for_the_head_and_looks_again() -> None:
    runner = Runner(position=3)
    f = fence(runner, head=6)
    projected = f.projected
    assert f.after_miss(projected) is True
    assert runner.waited == [6]


def test_a_miss_made_at_the_head_stands_without_waiting() -> None:
    runner = Runner(position=6)
    f = fence(runner, head=6)
    assert f.after_miss(f.projected) is False
    assert runner.waited == []


def test_a_miss_made_behind_counts_even_if_the_runner_caught_up_since() -> None:
    """The row may have been written between the read and the check: look again."""
    runner = Runner(position=4)
    f = fence(runner, head=6)
    projected = f.projected
    runner.position = 6  # the batch landed right after the read
    assert f.after_miss(projected) is True
    assert runner.waited == []  # nothing left to wait for


@pytest.mark.parametrize("failure", [TimeoutError("slow"), ProjectionStopped("broken")])
def test_a_lagging_or_stopped_read_model_is_logged_not_raised(
    failure: BaseException, caplog: pytest.LogCaptureFixture
) -> None:
    runner = Runner(position=1, fails=failure)
    f = fence(runner, head=3)
    f.answering(3)
    with caplog.at_level(logging.WARNING, logger="api.read_fence"):
        f.before_list()
        assert f.after_miss(f.projected) is True
    assert runner.waited == [3, 3]
    assert [r.message for r in caplog.records] == [
        f"read model behind position 3: {failure}",
        f"read model behind position 3: {failure}",
    ]
