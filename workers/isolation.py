"""Process isolation: run a handler in a child process that can be stopped at once.

A thread cannot be killed; a process can. An attempt runs in a fresh child (a new
interpreter, ~0.1-0.3 s to start) when its definition sets ``executionConfig.isolation:
process`` or its security level is ``MEDIUM`` or ``HIGH``. A timeout or a forced cancel
kills the child (SIGKILL); a plain cancel sends SIGTERM. The child dies with its worker.

The child gets the worker's ``sys.path`` in its orders (not through the environment,
which a ``HIGH`` attempt does not share), and ``resourceRequirements.memory`` as a hard
limit (workers/child.py). ``HIGH`` adds a clean environment, an empty directory of its
own as its working directory (removed afterwards) and the run-as user (workers/sandbox.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec

from workers.child import MEMORY_LIMIT_EXCEEDED, Answer, answer_decoder
from workers.handlers import TaskContext
from workers.protocol import WorkItem
from workers.sandbox import RUN_AS_REQUIRED, Sandbox

_BOOT = (
    "import sys, json; orders = json.loads(sys.stdin.buffer.read()); sys.path[:] = "
    "orders['path']; from workers.child import main; main(orders)"
)
# How a child that went over its memory limit may die when no MemoryError could be raised
# (an allocation in C code that does not check).
_MEMORY_DEATHS = (-signal.SIGSEGV, -signal.SIGABRT, -signal.SIGBUS)
_POLL_MS = 100  # how often a silent child is checked for having exited
_CHUNK = 1 << 16


class HandlerFailed(Exception):
    """The handler raised in the child; ``error_type`` is its exception's class name,
    ``traceback`` the child's formatted traceback (None: the child died without one)."""

    def __init__(
        self,
        error_type: str,
        message: str,
        traceback: str | None = None,
        retryable: bool = True,
    ) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.traceback = traceback
        self.retryable = retryable


def in_child(item: WorkItem) -> bool:
    """Does ``item`` run in a child process?"""
    return item.isolation == "process" or item.security_level in ("MEDIUM", "HIGH")


class ChildProcess:
    """One attempt in one child process."""

    def __init__(self, item: WorkItem, context: TaskContext, sandbox: Sandbox) -> None:
        self._item = item
        self._sandbox = sandbox
        self._high = item.security_level == "HIGH"
        self._orders: dict[str, Any] = {
            "handler": item.handler,
            "input": item.input,
            "context": {
                "task_id": context.task_id,
                "attempt": context.attempt,
                "definition_id": context.definition_id,
                "worker": context.worker,
                "timeout_ms": context.timeout_ms,
            },
            "path": [entry or os.getcwd() for entry in sys.path],  # "": the worker's cwd
            "memory": item.memory,
            "worker_pid": os.getpid(),
        }
        self._process: subprocess.Popen[bytes] | None = None

    async def run(self) -> Any:
        """The handler's output; HandlerFailed if it raised; killed if this is cancelled."""
        refusal = self._sandbox.refusal() if self._high else None
        if refusal is not None:
            raise HandlerFailed(RUN_AS_REQUIRED, refusal, retryable=False)
        home = self._sandbox.attempt_dir() if self._high else None
        try:
            answer = await self._exchange(home)
        finally:
            self.stop(force=True)
            if home is not None:
                self._sandbox.remove(home)
        if answer is None:
            raise self._died()
        if answer.error is None:
            return None if answer.ok is msgspec.UNSET else answer.ok
        raise HandlerFailed(answer.error, answer.message, answer.traceback, answer.retryable)

    async def _exchange(self, home: Path | None) -> Answer | None:
        read, write = self._start(home)
        orders = {**self._orders, "answer_fd": write, "run_as": self._run_as()}
        return await asyncio.to_thread(self._talk, msgspec.json.encode(orders), read)

    def _start(self, home: Path | None) -> tuple[int, int]:
        """The child, started; (our end of its answer pipe, the number of its end)."""
        read, write = os.pipe()
        try:
            # Started from the loop's thread: the child dies with this thread (the
            # worker's main one), not with a pool thread that may end while it runs.
            self._process = subprocess.Popen(
                [sys.executable, "-I", "-c", _BOOT],
                stdin=subprocess.PIPE,
                pass_fds=(write,),
                cwd=home,
                env=self._environment(home),
                process_group=0,  # what the handler starts goes with it (``stop``)
            )
        except BaseException:
            os.close(read)
            raise
        finally:
            os.close(write)
        return read, write

    def _environment(self, home: Path | None) -> dict[str, str] | None:
        if home is None:
            return None  # MEDIUM, isolation: process: the worker's environment
        return self._sandbox.environment(home, self._item.allow_env)

    def _run_as(self) -> dict[str, int] | None:
        run_as = self._sandbox.run_as if self._high else None
        return {"uid": run_as.uid, "gid": run_as.gid} if run_as is not None else None

    def _talk(self, orders: bytes, read: int) -> Answer | None:
        """Send the orders, read the answer until the child closes its end or exits."""
        assert self._process is not None and self._process.stdin is not None
        try:
            self._process.stdin.write(orders)
            self._process.stdin.close()
        except OSError:
            pass  # it died before it read them: no answer
        try:
            data = self._answer(read)
        finally:
            os.close(read)
        self._process.wait()
        if not data:
            return None
        try:
            return answer_decoder.decode(data)
        except msgspec.DecodeError:  # not an answer: as if it died without one
            return None

    def _answer(self, read: int) -> bytes:
        """All the child wrote. Not up to EOF alone: a process the handler started holds
        the pipe open as long as it lives; once the child exited, what it wrote is read."""
        assert self._process is not None
        chunks: list[bytes] = []
        poller = select.poll()
        poller.register(read, select.POLLIN)
        while True:
            if poller.poll(_POLL_MS):
                chunk = os.read(read, _CHUNK)
                if not chunk:
                    return b"".join(chunks)  # EOF
                chunks.append(chunk)
            elif self._process.poll() is not None:
                os.set_blocking(read, False)
                with contextlib.suppress(BlockingIOError):
                    while chunk := os.read(read, _CHUNK):
                        chunks.append(chunk)
                return b"".join(chunks)

    def _died(self) -> HandlerFailed:
        code = self._process.returncode if self._process is not None else None
        if self._item.memory is not None and code in _MEMORY_DEATHS:
            message = f"the attempt died (exit code {code}) over its memory limit"
            return HandlerFailed(MEMORY_LIMIT_EXCEEDED, f"{message} of {self._item.memory} bytes")
        return HandlerFailed("WorkerProcessDied", f"exit code {code}")

    def stop(self, force: bool) -> None:
        """SIGKILL (``force``) or SIGTERM the child and whatever it started (its process
        group: a handler's own background processes do not outlive its attempt)."""
        process = self._process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            # SIGTERM: the handler may clean up
            os.killpg(process.pid, signal.SIGKILL if force else signal.SIGTERM)
        if force and process.poll() is None:
            process.wait(5)
