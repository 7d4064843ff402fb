"""Process isolation: run a handler in a child process that can be stopped at once.

A thread cannot be killed; a process can. Definitions that set
``executionConfig.isolation: process`` run each attempt in a fresh child (``spawn``: no
state shared with the worker, ~0.1-0.3 s to start). A timeout or a forced cancel kills
the child (SIGKILL); a plain cancel sends SIGTERM so the handler may clean up.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import traceback
from multiprocessing.connection import Connection
from typing import Any

from workers.handlers import HandlerRegistry, TaskContext

_SPAWN = multiprocessing.get_context("spawn")


class HandlerFailed(Exception):
    """The handler raised in the child; ``error_type`` is its exception's class name,
    ``traceback`` the child's formatted traceback (None: the child died without one)."""

    def __init__(self, error_type: str, message: str, traceback: str | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.traceback = traceback


def _child(reference: str, payload: Any, fields: dict[str, Any], out: Connection) -> None:
    context = TaskContext(**fields)
    try:
        handler = HandlerRegistry().resolve(reference)
        result = handler(payload, context)
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
        out.send(("ok", result))
    except BaseException as exc:  # report anything, even SystemExit, to the parent
        trace = "".join(traceback.format_exception(exc))
        out.send(("error", type(exc).__name__, str(exc), trace))
    finally:
        out.close()


class ChildProcess:
    """One attempt in one child process."""

    def __init__(self, reference: str, payload: Any, context: TaskContext) -> None:
        fields = {
            "task_id": context.task_id,
            "attempt": context.attempt,
            "definition_id": context.definition_id,
            "worker": context.worker,
            "timeout_ms": context.timeout_ms,
        }
        self._receive, send = _SPAWN.Pipe(duplex=False)
        self._process = _SPAWN.Process(
            target=_child, args=(reference, payload, fields, send), daemon=True
        )
        self._send = send

    async def run(self) -> Any:
        """The handler's output; HandlerFailed if it raised; killed if this is cancelled."""
        self._process.start()
        self._send.close()  # the child holds the only writer: EOF when it dies
        try:
            message = await asyncio.to_thread(self._wait)
        finally:
            self.stop(force=True)
        if message is None:
            raise HandlerFailed("WorkerProcessDied", f"exit code {self._process.exitcode}")
        if message[0] == "ok":
            return message[1]
        raise HandlerFailed(message[1], message[2], message[3] if len(message) > 3 else None)

    def _wait(self) -> tuple[Any, ...] | None:
        try:
            message: tuple[Any, ...] = self._receive.recv()
            return message
        except EOFError:
            return None

    def stop(self, force: bool) -> None:
        """SIGKILL (``force``) or SIGTERM the child if it still runs."""
        if self._process.pid is None or not self._process.is_alive():
            return
        if force:
            self._process.kill()
            self._process.join(5)
        else:
            self._process.terminate()  # SIGTERM: the handler may clean up
