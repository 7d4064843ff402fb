"""Read-your-writes for submits, paid by the reads that need it rather than by every submit.

A submit is answered as soon as its event is durable, without waiting for the projection
to write its row (that wait was a third of a lone submit's time, and under load it queued
every submit behind a projection batch). What the contract promises still holds:

- ``GET /api/v1/tasks/{id}``: a task that is not in the read model may be committed and
  not yet projected, on this replica or another. On such a miss the read waits until the
  read model has reached the head of the store's log, then looks again: a 404 is only
  given for a task that the store does not hold (as of that read). A hit needs no wait.
- Lists: a list waits until the read model holds every submit this process has answered
  (usually it does already: the runner is woken by every commit). A submit answered by
  another replica a moment ago may be missing from a list for those moments.

Bulk submits, cancels and manual completions still wait for their rows before they are
answered: a bulk request is one wait per 500 tasks and keeps bulk clients from running
far ahead of the pipeline; a cancel's row would be stale, not missing (and they are rare).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

from projections.runner import ProjectionStopped

log = logging.getLogger(__name__)


class RunnerPort(Protocol):
    """What the fence needs of projections.runner.ProjectionRunner."""

    @property
    def position(self) -> int: ...

    def wait_for(self, position: int, timeout: float, poke: bool = True) -> None: ...


class ReadFence:
    """Tracks the answered submits' positions; makes reads wait for them when needed."""

    def __init__(self, runner: RunnerPort, log_head: Callable[[], int], timeout: float) -> None:
        self._runner = runner
        self._log_head = log_head
        self._timeout = timeout
        self._lock = threading.Lock()
        self._answered = 0  # the highest position of a submit answered without waiting

    @property
    def answered(self) -> int:
        return self._answered

    def answering(self, position: int) -> None:
        """A submit recorded at ``position`` is about to be answered."""
        with self._lock:
            if position > self._answered:
                self._answered = position

    def before_list(self) -> None:
        """Wait (bounded) until the read model holds every submit answered here."""
        self.wait_for(self._answered)

    @property
    def projected(self) -> int:
        """The read model's position now: take it before a read that may miss."""
        return self._runner.position

    def after_miss(self, projected: int) -> bool:
        """A read made when the read model was at ``projected`` did not find a task: wait
        until the read model reaches the log's head. True if the read was made behind the
        head (look again: the task may have been written since), False if the miss stands."""
        head = self._log_head()
        if projected >= head:
            return False
        self.wait_for(head)
        return True

    def wait_for(self, position: int) -> None:
        """Wait (bounded) for the read model to reach ``position``. A lag is logged, not
        raised: what was asked for is durable, only the read model is late."""
        if self._runner.position >= position:
            return
        try:
            self._runner.wait_for(position, self._timeout)
        except (TimeoutError, ProjectionStopped) as exc:
            log.warning("read model behind position %d: %s", position, exc)
