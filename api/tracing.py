"""Traces on the write side of ``serve``: a command carries its request's trace context
(stored with a new task), and each command's commit is a span under it.

The group commit saves many requests' commands in one transaction: each command that
carries a context gets a ``taskexec.commit`` span of its own, under its own request's
span, all with the batch's start and end. Tracing off: nothing here runs (bootstrap and
the facade check ``tracing.active()`` once).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from workers import tracing

C = TypeVar("C")
R = TypeVar("R")

COMMIT_SPAN = "taskexec.commit"


def traced(command: C) -> C:
    """``command`` with the current span's context (the request's), if tracing is on."""
    carrier = tracing.current()
    return replace(command, trace=carrier) if carrier else command  # type: ignore[type-var]


def traced_commits(
    execute: Callable[[Sequence[C]], Sequence[R | Exception]],
) -> Callable[[Sequence[C]], Sequence[R | Exception]]:
    """``execute`` (a group commit's), recording a commit span for each traced command."""

    def execute_traced(commands: Sequence[C]) -> Sequence[R | Exception]:
        start = time.time_ns()
        try:
            results = execute(commands)
        except Exception as exc:
            _record(commands, start, [exc] * len(commands))
            raise
        _record(commands, start, results)
        return results

    return execute_traced


def _record(commands: Sequence[Any], start: int, results: Sequence[Any]) -> None:
    end = time.time_ns()
    for command, result in zip(commands, results, strict=True):
        error = result if isinstance(result, Exception) else None
        attributes = {"taskexec.command": type(command).__name__, "taskexec.batch": len(commands)}
        tracing.record(COMMIT_SPAN, "internal", command.trace, start, end, attributes, error)
