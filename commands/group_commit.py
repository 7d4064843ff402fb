"""Group commit: commands from many callers, saved in one transaction per batch.

Every append to the event store is a transaction that takes the events table's lock, so
one command per transaction caps a PostgreSQL store at a few hundred commands a second
however many threads call it. Here callers only queue their command; one committer
thread takes whatever is waiting (up to ``max_batch``) and hands it to ``execute`` as one
batch. Nothing waits for a batch to fill: a command that arrives at an idle committer is
executed at once, alone, and while a batch is being saved the next one gathers. Each
caller gets its own command's answer (``execute`` returns one per command).

``submit`` returns a ``concurrent.futures.Future``: a thread waits with ``result()``, a
coroutine with ``asyncio.wrap_future`` (no thread is held while it waits).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

C = TypeVar("C")
R = TypeVar("R")

_STOP = object()


class CommitterStopped(RuntimeError):
    """The committer was stopped before it ran this command."""


class GroupCommit(Generic[C, R]):
    """Runs ``execute(batch)`` on one thread for whatever commands are waiting."""

    def __init__(
        self,
        execute: Callable[[Sequence[C]], Sequence[R | Exception]],
        max_batch: int = 500,
        on_committed: Callable[[], None] = lambda: None,
        name: str = "group-commit",
    ) -> None:
        self._execute = execute
        self._max_batch = max_batch
        self._on_committed = on_committed
        self._queue: queue.SimpleQueue[tuple[C, Future[R]] | object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False
        self._stopped = False
        self.batches = 0  # how many batches ran, and how many commands: for tests and stats
        self.commands = 0

    def start(self) -> None:
        self._started = True
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Run what is queued already, then stop; later submits fail at once."""
        if self._stopped:
            return
        self._stopped = True
        if self._started:
            self._queue.put(_STOP)
            self._thread.join(timeout)

    def submit(self, command: C) -> Future[R]:
        """Queue ``command``; the future gets its answer (a result, or its exception)."""
        future: Future[R] = Future()
        if self._stopped or not self._started:
            future.set_exception(CommitterStopped("the service is not accepting commands"))
            return future
        self._queue.put((command, future))
        return future

    def _run(self) -> None:
        while True:
            batch, stopping = self._gather()
            if batch:
                self._commit(batch)
            if stopping:
                break
        while True:  # submitted while stopping: refuse rather than leave them waiting
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, tuple) and _take(item[1]):
                item[1].set_exception(CommitterStopped("the service is stopping"))

    def _gather(self) -> tuple[list[tuple[C, Future[R]]], bool]:
        """Block for the first command, then take whatever else is waiting."""
        batch: list[tuple[C, Future[R]]] = []
        item = self._queue.get()
        while True:
            if item is _STOP:
                return batch, True
            batch.append(item)  # type: ignore[arg-type]
            if len(batch) >= self._max_batch:
                return batch, False
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return batch, False

    def _commit(self, batch: list[tuple[C, Future[R]]]) -> None:
        # A caller may withdraw a command that is still queued (Future.cancel(): the
        # database is unreachable, api/availability.py); from here on it cannot.
        batch = [(command, future) for command, future in batch if _take(future)]
        if not batch:
            return
        commands = [command for command, _ in batch]
        try:
            results = self._execute(commands)
        except Exception as exc:  # the whole batch failed (the database, say)
            log.warning("a batch of %d commands failed: %r", len(batch), exc)
            for _, future in batch:
                future.set_exception(exc)
            return
        self.batches += 1
        self.commands += len(batch)
        try:
            self._on_committed()
        except Exception:
            log.exception("after-commit hook failed")
        for (_, future), result in zip(batch, results, strict=True):
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)


def _take(future: Future[R]) -> bool:
    """Mark ``future`` running; False if its caller withdrew it (cancelled) meanwhile."""
    return future.set_running_or_notify_cancel()
