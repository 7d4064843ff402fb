"""Handler registry: ``"package.module:function"`` names the code of an AUTOMATED task.

A handler takes ``(input, context)`` and returns the output (a JSON value). It may be
a plain function (run in a thread) or a coroutine function (awaited on the loop). A plain
function marked ``@inline`` runs on the event loop itself: for handlers that take
microseconds, where the hop to a thread and back costs more than the work. An inline
handler must never block: while it runs, the worker does nothing else (and its timeout
cannot interrupt it).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar


class HandlerNotFound(LookupError):
    """The handler reference does not name an importable callable."""


@dataclass
class TaskContext:
    """What a handler may know about the attempt it runs."""

    task_id: str
    attempt: int
    definition_id: str
    worker: str
    timeout_ms: int
    _cancelled: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def cancelled(self) -> bool:
        """True once the task was cancelled: a handler should clean up and return."""
        return self._cancelled.is_set()


Handler = Callable[[Any, TaskContext], Any]
H = TypeVar("H", bound=Callable[..., Any])


def inline(handler: H) -> H:
    """Mark a quick, non-blocking plain function to be called on the event loop."""
    handler.__taskexec_inline__ = True  # type: ignore[attr-defined]
    return handler


class HandlerRegistry:
    """Resolves and caches handler references."""

    def __init__(self) -> None:
        self._cache: dict[str, Handler] = {}
        self._inline: dict[str, Handler | None] = {}

    def resolve(self, reference: str) -> Handler:
        handler = self._cache.get(reference)
        if handler is None:
            handler = _import(reference)
            self._cache[reference] = handler
        return handler

    def inline(self, reference: str) -> Handler | None:
        """The handler ``reference`` names if it is a plain ``@inline`` function (the
        worker calls those straight from its loop), else None (unknown ones too: ``call``
        reports those). Decided once per reference."""
        try:
            return self._inline[reference]
        except KeyError:
            pass
        try:
            handler = self.resolve(reference)
        except HandlerNotFound:
            return None
        found = self._inline[reference] = handler if _runs_inline(handler) else None
        return found

    async def call(self, reference: str, payload: Any, context: TaskContext) -> Any:
        handler = self.resolve(reference)
        if inspect.iscoroutinefunction(handler):
            return await handler(payload, context)
        if _runs_inline(handler):
            return handler(payload, context)
        result = await asyncio.to_thread(handler, payload, context)
        if inspect.isawaitable(result):  # e.g. an object with ``async def __call__``
            result = await result
        return result


def _runs_inline(handler: Handler) -> bool:
    """Marked ``@inline``, and a plain function (a coroutine function is awaited)."""
    return bool(getattr(handler, "__taskexec_inline__", False)) and not (
        inspect.iscoroutinefunction(handler)
    )


def _import(reference: str) -> Handler:
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise HandlerNotFound(f"handler {reference!r} must be 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, and whatever the module raises while importing
        raise HandlerNotFound(
            f"handler module {module_name!r} cannot be imported: {exc!r}"
        ) from exc
    handler = getattr(module, attribute, None)
    if not callable(handler):
        raise HandlerNotFound(f"{module_name!r} has no callable {attribute!r}")
    return handler  # type: ignore[no-any-return]
