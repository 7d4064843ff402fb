"""One attempt of one task on a worker: run it within its timeout, stop it when cancelled.

What each way of running offers:
- async handler: a timeout or a forced cancel cancels it at its next ``await``;
- sync handler (a thread): cooperative only: ``context.cancelled`` turns true, the
  worker stops waiting at the timeout or a forced cancel, and the thread's result is
  discarded (a thread cannot be killed);
- ``isolation: process``, security level ``MEDIUM`` or ``HIGH`` (a child process,
  workers/isolation.py): a timeout or a forced cancel kills the child at once; a plain
  cancel sends it SIGTERM;
- INTEGRATION: the HTTP call is cancelled (the connection is closed).
After a cancel nothing is reported: the task is CANCELLED in the store already, and any
late report would be discarded there anyway.
A handler that raised is logged (WARNING, with its traceback), and whatever the handler
logs carries the attempt's ``task_id``, ``attempt`` and ``worker`` (workers/logs.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from dataclasses import dataclass
from typing import Any, Protocol

from domain.tracebacks import bounded_traceback
from workers import tracing
from workers.handlers import Handler, HandlerRegistry, TaskContext
from workers.integration import IntegrationError, IntegrationExecutor
from workers.isolation import ChildProcess, HandlerFailed, in_child
from workers.logs import bind as bind_log_context
from workers.logs import unbind as unbind_log_context
from workers.protocol import WorkItem
from workers.sandbox import Sandbox

log = logging.getLogger(__name__)

ATTEMPT_SPAN = "taskexec.attempt"


@dataclass(frozen=True)
class Result:
    """How an attempt ended, as a report: ``completed`` or ``failed``."""

    kind: str
    output: Any = None
    error_type: str = ""
    error_message: str = ""
    retryable: bool = True
    traceback: str | None = None  # a handler's, bounded (domain/tracebacks.py)


def failure(exc: Exception) -> Result:
    """The failed report of an attempt that raised ``exc``, with the handler's traceback
    (the child's, for ``isolation: process``); an INTEGRATION failure has none: no code
    of ours failed, the endpoint's answer (type and message) says what happened."""
    if isinstance(exc, IntegrationError):
        return Result(
            "failed", error_type=exc.error_type, error_message=str(exc), retryable=exc.retryable
        )
    if isinstance(exc, HandlerFailed):
        trace = bounded_traceback(exc.traceback)
        return Result(
            "failed",
            error_type=exc.error_type,
            error_message=str(exc),
            retryable=exc.retryable,
            traceback=trace,
        )
    trace = bounded_traceback("".join(traceback.format_exception(exc)))
    return Result("failed", error_type=type(exc).__name__, error_message=str(exc), traceback=trace)


class AttemptObserver(Protocol):
    """Told when an attempt starts and ends (the worker's metrics: workers/metrics.py);
    ``result`` None: cancelled."""

    def started(self) -> None: ...
    def ended(self, definition: str, result: Result | None, seconds: float) -> None: ...


class Attempt:
    """Runs a work item; ``cancel()`` may stop it from outside."""

    def __init__(
        self,
        item: WorkItem,
        worker_id: str,
        registry: HandlerRegistry,
        integration: IntegrationExecutor,
        observer: AttemptObserver | None = None,
        sandbox: Sandbox | None = None,
    ) -> None:
        self.item = item
        self._sandbox = sandbox or Sandbox()
        self._observer = observer
        self.context = TaskContext(
            task_id=item.task_id,
            attempt=item.attempt,
            definition_id=item.definition_id,
            worker=worker_id,
            timeout_ms=item.timeout_ms,
        )
        self._registry = registry
        self._integration = integration
        self._child: ChildProcess | None = None
        self._running: asyncio.Task[Any] | None = None
        self.cancelled = False
        self.trace: dict[str, str] | None = None  # the attempt span's context (tracing on)
        self.log_fields: dict[str, object] = _log_fields(self.context)
        trace_id = tracing.trace_id(item.trace)
        if trace_id is not None:
            self.log_fields["trace_id"] = trace_id

    async def run(self) -> Result | None:
        """The result to report, or None when the task was cancelled meanwhile; with
        tracing on, in an attempt span that continues the task's trace."""
        if not tracing.active():
            return await self._observed()
        with tracing.span(ATTEMPT_SPAN, "consumer", self.item.trace, self._attributes()) as span:
            self._traced(span)
            result = await self._observed()
            _outcome(span, result)
            return result

    def _attributes(self) -> dict[str, object]:
        return {
            "taskexec.task_id": self.item.task_id,
            "taskexec.attempt": self.item.attempt,
            "taskexec.definition": self.item.definition_id,
            "taskexec.worker": self.context.worker,
        }

    def _traced(self, span: Any) -> None:
        self.trace = tracing.current()
        self.log_fields["trace_id"] = format(span.get_span_context().trace_id, "032x")

    async def _observed(self) -> Result | None:
        if self._observer is None:
            return await self._run()
        started = time.perf_counter()
        self._observer.started()
        result = None
        try:
            result = await self._run()
        finally:
            seconds = time.perf_counter() - started
            self._observer.ended(self.item.definition_id, result, seconds)
        return result

    async def _run(self) -> Result | None:
        self._running = asyncio.create_task(self._execute())
        try:
            async with asyncio.timeout(self.item.timeout_ms / 1000):
                output = await asyncio.shield(self._running)
        except TimeoutError:
            self._stop(force=True)
            if self.cancelled:
                return None
            return Result(
                "failed",
                error_type="TIMEOUT",
                error_message=f"attempt exceeded its timeout of {self.item.timeout_ms} ms",
            )
        except asyncio.CancelledError:
            if self._running.cancelled() and self.cancelled:
                return None  # we stopped it: a forced cancel
            raise
        except Exception as exc:  # the handler's failure is the attempt's failure
            return None if self.cancelled else self._failed(exc)
        return None if self.cancelled else Result("completed", output=output)

    def inline_handler(self) -> Handler | None:
        """The handler, if this attempt is a call of an ``@inline`` one (see run_inline)."""
        item = self.item
        if item.task_type == "INTEGRATION" or not item.handler or in_child(item):
            return None
        return self._registry.inline(item.handler)

    def run_inline(self, handler: Handler) -> Result:
        """Run an ``@inline`` handler now, on the event loop, without the machinery of
        ``run``: it returns before anything else can happen on the loop, so no timeout
        or cancel could have stopped it there either (workers/handlers/__init__.py)."""
        if not tracing.active():
            return self._inline(handler)
        with tracing.span(ATTEMPT_SPAN, "consumer", self.item.trace, self._attributes()) as span:
            self._traced(span)
            result = self._inline(handler)
            _outcome(span, result)
            return result

    def _inline(self, handler: Handler) -> Result:
        started = time.perf_counter()
        token = bind_log_context(**self.log_fields)  # the handler's lines say whose
        try:
            result = Result("completed", output=handler(self.item.input, self.context))
        except Exception as exc:
            result = self._failed(exc)
        finally:
            unbind_log_context(token)
        if self._observer is not None:
            self._observer.started()
            self._observer.ended(self.item.definition_id, result, time.perf_counter() - started)
        return result

    def cancel(self, force: bool) -> None:
        """The task was cancelled: tell the handler; with ``force`` stop it now."""
        self.cancelled = True
        self.context._cancelled.set()
        if self._child is not None:
            self._child.stop(force=force)
        if force:
            self._stop(force=True)

    def _stop(self, force: bool) -> None:
        if self._child is not None:
            self._child.stop(force=force)
        if self._running is not None and not self._running.done():
            self._running.cancel()

    def _failed(self, exc: Exception) -> Result:
        """The failed report of ``exc``; logged, with the traceback (WARNING): a child's
        (``isolation: process``) as it sent it, since the parent's says nothing."""
        result = failure(exc)
        args = (self.item.attempt, self.item.task_id, result.error_type, result.error_message)
        message = "attempt %d of %s failed: %s: %s"
        fields = self.log_fields
        if not isinstance(exc, HandlerFailed) or result.traceback is None:
            log.warning(message, *args, exc_info=exc, extra=fields)
        elif log.isEnabledFor(logging.WARNING):
            record = log.makeRecord(
                log.name, logging.WARNING, __file__, 0, message, args, None, extra=fields
            )
            record.exc_text = result.traceback.rstrip()  # both formats print it as one
            log.handle(record)
        return result

    async def _execute(self) -> Any:
        # A task of its own (``_run``): the lines the handler logs say whose they are.
        bind_log_context(**self.log_fields)
        item = self.item
        if item.task_type == "INTEGRATION":
            if not item.endpoint:
                raise ValueError("INTEGRATION task without an endpoint")
            key = f"{item.task_id}:{item.attempt}"  # the same on a redelivery of the attempt
            timeout_s = item.timeout_ms / 1000
            return await self._integration.call(
                item.endpoint, item.input, timeout_s, key, item.auth
            )
        if not item.handler:
            raise ValueError(f"{item.task_type} task without a handler")
        if in_child(item):
            self._child = ChildProcess(item, self.context, self._sandbox)
            return await self._child.run()
        return await self._registry.call(item.handler, item.input, self.context)


def _outcome(span: Any, result: Result | None) -> None:
    """How the attempt ended, on its span: failed ends it in error."""
    span.set_attribute("taskexec.outcome", result.kind if result is not None else "cancelled")
    if result is not None and result.kind == "failed":
        tracing.failed(span, f"{result.error_type}: {result.error_message}"[:200])


def _log_fields(context: TaskContext) -> dict[str, object]:
    """The log context of an attempt (workers/logs.py)."""
    return {"task_id": context.task_id, "attempt": context.attempt, "worker": context.worker}
