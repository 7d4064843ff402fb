"""How far the read models are applied, and who waits for that: ``ProjectionRunner``
advances it after each batch; readers block on it (``wait_for``) or await a future
(``applied``), and learn when the projection stopped instead."""

from __future__ import annotations

import heapq
import itertools
import threading
from concurrent.futures import Future


class ProjectionStopped(RuntimeError):
    """The projection hit an event it cannot apply and stopped."""


class AppliedPosition:
    """The applied position and generation, the error that stopped the projection (if
    any), and the waiters for positions not applied yet."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self.position = 0
        self.generation = 0
        self.error: str | None = None
        self._waiters: list[tuple[int, int, Future[None]]] = []  # a heap by position
        self._waiter_ids = itertools.count()

    def wait_for(self, position: int, timeout: float) -> None:
        """Block until ``position`` is applied; raise TimeoutError or ProjectionStopped."""
        with self._changed:
            ok = self._changed.wait_for(
                lambda: self.position >= position or self.error is not None, timeout
            )
        if self.error is not None and self.position < position:
            raise ProjectionStopped(self.error)
        if not ok:
            raise TimeoutError(f"read models did not reach position {position}")

    def applied(self, position: int) -> Future[None]:
        """A future that is done once ``position`` is applied (or fails with
        ProjectionStopped)."""
        future: Future[None] = Future()
        with self._changed:
            if self.position >= position:
                future.set_result(None)
            elif self.error is not None:
                future.set_exception(ProjectionStopped(self.error))
            else:
                heapq.heappush(self._waiters, (position, next(self._waiter_ids), future))
        return future

    def advance(self, generation: int, position: int) -> None:
        with self._changed:
            self.generation = generation
            self.position = position
            self._resolve_waiters()
            self._changed.notify_all()

    def stop(self, message: str) -> None:
        """The projection stopped: every waiter learns it."""
        with self._changed:
            self.error = message
            self._resolve_waiters()
            self._changed.notify_all()

    def _resolve_waiters(self) -> None:
        """Resolve the waiters that are satisfied (called with ``_changed`` held)."""
        while self._waiters and self._waiters[0][0] <= self.position:
            future = heapq.heappop(self._waiters)[2]
            if not future.done():
                future.set_result(None)
        if self.error is not None:
            for _, _, future in self._waiters:
                if not future.done():
                    future.set_exception(ProjectionStopped(self.error))
            self._waiters.clear()
