"""The child process side of a process-isolated attempt (workers/isolation.py starts it).

It reads its orders (JSON) from stdin, then, in this order: dies with its worker
(``PR_SET_PDEATHSIG``), drops to the run-as user if told to (and asks again to die with its
worker: a change of user clears that), sets its memory limit, and only then imports and
runs the handler. The answer goes back as JSON on the file descriptor it was given
(``Answer``: the output, or the error's type, message and traceback). JSON, never pickle,
decoded into ``Answer`` and checked: the worker must not trust what a sandboxed handler
sends.

The memory limit is ``RLIMIT_DATA`` (soft and hard), set once the interpreter runs: it
counts what the handler allocates (heap, private writable mappings), not the libraries
and thread stacks mapped at start, and an allocation past it raises MemoryError, reported
as ``MEMORY_LIMIT_EXCEEDED``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import resource
import signal
import sys
import traceback
from typing import Any

import msgspec

from workers.handlers import HandlerRegistry, TaskContext

MEMORY_LIMIT_EXCEEDED = "MEMORY_LIMIT_EXCEEDED"
OUTPUT_NOT_JSON = "OUTPUT_NOT_JSON"  # as workers/reports.py calls it
PR_SET_PDEATHSIG = 1


class Answer(msgspec.Struct, frozen=True):
    """What the child sends back: ``ok`` (the output), or ``error`` and the rest. The
    worker decodes it into this and nothing else (a type that is not right: no answer)."""

    ok: Any = msgspec.UNSET
    error: str | None = None
    message: str = ""
    traceback: str | None = None
    retryable: bool = True


answer_decoder = msgspec.json.Decoder(Answer)


def main(orders: dict[str, Any]) -> None:
    """Run the handler the orders name; answer on ``orders["answer_fd"]``."""
    _die_with_worker(orders["worker_pid"])
    run_as = orders.get("run_as")
    if run_as is not None:
        os.setgroups([])
        os.setgid(run_as["gid"])
        os.setuid(run_as["uid"])
        _die_with_worker(orders["worker_pid"])
    memory = orders.get("memory")
    if memory is not None:
        resource.setrlimit(resource.RLIMIT_DATA, (memory, memory))
    answer = _run(orders)
    with os.fdopen(orders["answer_fd"], "wb") as out:
        out.write(answer)


def _run(orders: dict[str, Any]) -> bytes:
    context = TaskContext(**orders["context"])
    try:
        handler = HandlerRegistry().resolve(orders["handler"])
        result = handler(orders["input"], context)
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
        return _output(result)
    except MemoryError as exc:
        traceback.clear_frames(exc.__traceback__)  # let go of what the handler holds
        limit = orders.get("memory")
        message = f"the attempt went over its memory limit of {limit} bytes"
        return _error(exc, MEMORY_LIMIT_EXCEEDED if limit is not None else None, message)
    except BaseException as exc:  # report anything, even SystemExit, to the worker
        return _error(exc)


def _output(result: Any) -> bytes:
    try:
        return msgspec.json.encode(Answer(ok=result))
    except (TypeError, msgspec.EncodeError) as exc:  # failed, not retried: as in the worker
        return msgspec.json.encode(Answer(error=OUTPUT_NOT_JSON, message=str(exc), retryable=False))


def _error(exc: BaseException, error_type: str | None = None, message: str | None = None) -> bytes:
    trace: str | None
    try:
        trace = "".join(traceback.format_exception(exc))
    except MemoryError:
        trace = None
    answer = Answer(
        error=error_type or type(exc).__name__,
        message=message if message is not None else str(exc),
        traceback=trace,
    )
    return msgspec.json.encode(answer)


def _die_with_worker(worker_pid: int) -> None:
    """SIGKILL when the worker dies; gone already if it died before we asked."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != worker_pid:
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover - started by workers/isolation.py
    main(msgspec.json.decode(sys.stdin.buffer.read()))
