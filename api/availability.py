"""Commands answer within about a second when the database is unreachable.

A command is refused at once while the breaker is open (commands/db_monitor.py): nothing
was recorded. One that is already waiting for its transaction waits ``STALL_S``, then asks
the monitor to check now, and from then on waits for its answer or for the breaker to
open, whichever comes first. A slow but living database (a long WAL sync, a big bulk)
keeps its commands waiting; a silent one opens the breaker within the monitor's answer
bound (0.5 s), and the waiting commands are answered ``503`` then:

- a command not yet taken into a transaction is withdrawn: certainly not recorded;
- one whose transaction was sent may have committed or not (a connection lost during a
  COMMIT cannot tell): ``recorded: "unknown"``. Retrying with the same
  ``Idempotency-Key`` is safe either way: it returns the task if it was recorded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import anyio.to_thread
import psycopg
from eventsourcing.persistence import InterfaceError, OperationalError

from commands.db_monitor import DatabaseMonitor, DatabaseUnavailable
from commands.db_pool import recorded_after

log = logging.getLogger(__name__)

T = TypeVar("T")

STALL_S = 0.3  # a command waiting this long makes the monitor check the database now
POLL_S = 0.05  # ...and then looks at the breaker this often
RETRY_AFTER_S = 1


class ServiceUnavailable(Exception):
    """Answered ``503 SERVICE_UNAVAILABLE`` with ``Retry-After`` (api/http/errors.py)."""

    def __init__(self, message: str, recorded: bool | None = False) -> None:
        super().__init__(message)
        self.message = message
        self.recorded = recorded  # False: nothing recorded; None: may have been
        self.retry_after = RETRY_AFTER_S

    @property
    def details(self) -> dict[str, Any]:
        return {
            "recorded": "unknown" if self.recorded is None else self.recorded,
            "retryAfter": self.retry_after,
        }


def refused(reason: str) -> ServiceUnavailable:
    return ServiceUnavailable(
        f"the database is unreachable ({reason}); nothing was recorded: retry later",
        recorded=False,
    )


def unknown_outcome(reason: str) -> ServiceUnavailable:
    return ServiceUnavailable(
        f"the database became unreachable while this request was being recorded "
        f"({reason}): it may or may not have been; retry with the same Idempotency-Key "
        f"to get the task if it was recorded, and no duplicate",
        recorded=None,
    )


class _Watch:
    """The commands of one event loop waiting for their transactions, looked at every
    ``POLL_S`` by one task (cheaper than a timer per command on the hot path)."""

    def __init__(self, monitor: DatabaseMonitor) -> None:
        self._monitor = monitor
        self._waiting: dict[asyncio.Future[Any], tuple[float, Future[Any]]] = {}
        self._verdicts: dict[asyncio.Future[Any], ServiceUnavailable] = {}
        self._task: asyncio.Task[None] | None = None

    def add(self, waiting: asyncio.Future[Any], future: Future[Any]) -> None:
        loop = waiting.get_loop()
        self._waiting[waiting] = (loop.time(), future)
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._task = loop.create_task(self._look(), name="command-stall-watch")

    def discard(self, waiting: asyncio.Future[Any]) -> None:
        self._waiting.pop(waiting, None)

    def verdict(self, waiting: asyncio.Future[Any]) -> ServiceUnavailable | None:
        return self._verdicts.pop(waiting, None)

    async def _look(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiting:
            await asyncio.sleep(POLL_S)
            if self._monitor.is_open:
                self._give_up()
            elif any(loop.time() - since >= STALL_S for since, _ in self._waiting.values()):
                self._monitor.suspect(f"a command waited {STALL_S:g} s")

    def _give_up(self) -> None:
        """The breaker is open: answer every waiting command now."""
        reason = self._monitor.reason
        for waiting, (_, future) in list(self._waiting.items()):
            if future.cancel():  # still queued: withdrawn, never recorded
                self._verdicts[waiting] = refused(reason)
            elif not future.done():  # in a transaction that was sent
                self._verdicts[waiting] = unknown_outcome(reason)
            else:
                continue  # answered just now
            del self._waiting[waiting]
            waiting.cancel()


class Availability:
    """Answers this process's commands when the database may be unreachable (see the
    module's docstring). One per process, owned by its composition root; without a
    monitor (SQLite) commands are simply awaited."""

    def __init__(self, monitor: DatabaseMonitor | None) -> None:
        self._monitor = monitor
        self._watch = _Watch(monitor) if monitor is not None else None
        self._running: set[asyncio.Future[None]] = set()  # threads whose answer was given up

    def check(self) -> None:
        """Refuse at once (nothing recorded) while the breaker is open."""
        if self._monitor is not None and self._monitor.is_open:
            raise refused(self._monitor.reason)

    async def answer(self, future: Future[T]) -> T:
        """The result of a command queued as ``future``."""
        waiting = asyncio.wrap_future(future)
        watch = self._watch
        if watch is not None:
            watch.add(waiting, future)
        try:
            return await waiting
        except asyncio.CancelledError:
            verdict = watch.verdict(waiting) if watch is not None else None
            if verdict is None:
                raise  # the request itself was cancelled
            raise verdict from None
        except Exception as exc:
            if not is_database_error(exc):
                raise
            if recorded_after(exc) is False:
                raise refused(_first_line(exc)) from exc
            raise unknown_outcome(_first_line(exc)) from exc
        finally:
            if watch is not None:
                watch.discard(waiting)

    async def run(self, call: Callable[[], T]) -> T:
        """``call()`` on a worker thread, answered as ``answer`` does."""
        self.check()
        future: Future[T] = Future()

        def run_it() -> None:
            if not future.set_running_or_notify_cancel():
                return  # withdrawn before it started
            try:
                future.set_result(call())
            except BaseException as exc:
                future.set_exception(exc)

        # Litestar's thread pool (anyio's, as a sync handler would use), not the loop's
        # small default executor that the relay and the results consumer share.
        thread = asyncio.ensure_future(anyio.to_thread.run_sync(run_it))
        self._running.add(thread)  # the loop keeps only a weak reference to a task
        thread.add_done_callback(self._running.discard)
        return await self.answer(future)


def is_database_error(exc: BaseException) -> bool:
    """The database could not be reached or used (not a refusal of the request itself)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, DatabaseUnavailable):
            return True
        if isinstance(seen, psycopg.OperationalError | psycopg.InterfaceError):
            return True
        if isinstance(seen, OperationalError | InterfaceError):
            return True
        seen = seen.__cause__
    return False


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
