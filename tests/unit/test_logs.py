"""workers/logs.py: the two formats, the context fields, and an attempt's lines (its
handler's and its failure's) naming the task, the attempt and the worker."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from workers.attempt import Attempt
from workers.handlers import HandlerRegistry, inline
from workers.integration import IntegrationExecutor
from workers.logs import ContextFilter, JsonFormatter, TextFormatter, bind, context, unbind
from workers.protocol import WorkItem

ROOT = Path(__file__).parents[2]
HERE = __name__
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
handler_log = logging.getLogger("tests.handler")


class Captured:
    """What the root logger emitted, through one formatter (and the context filter)."""

    def __init__(self, formatter: logging.Formatter) -> None:
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(formatter)
        self.handler.addFilter(ContextFilter())

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def objects(self) -> list[dict[str, Any]]:
        """Every line, parsed: each must be one JSON object."""
        return [json.loads(line) for line in self.text.splitlines()]


@pytest.fixture
def captured() -> Iterator[Captured]:
    capture = Captured(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(capture.handler)
    root.setLevel(logging.INFO)
    try:
        yield capture
    finally:
        root.removeHandler(capture.handler)
        root.setLevel(level)


def test_a_json_line_has_the_fields_and_the_bound_context(captured: Captured) -> None:
    log = logging.getLogger("tests.logs")
    log.info("plain %s", "line")
    token = bind(request_id="r-1", task_id="t-1")
    try:
        log.warning("with\ncontext", extra={"status": 201, "where": Path("/tmp/x")})
    finally:
        unbind(token)
    log.info("after")
    first, second, third = captured.objects()
    assert set(first) == {"time", "level", "logger", "message"}
    assert TIME.fullmatch(first["time"]), first["time"]
    assert (first["level"], first["logger"], first["message"]) == (
        "INFO",
        "tests.logs",
        "plain line",
    )
    assert second["message"] == "with\ncontext"  # one line all the same: JSON escapes it
    assert (second["request_id"], second["task_id"], second["status"]) == ("r-1", "t-1", 201)
    assert second["where"] == "/tmp/x"  # what JSON cannot hold is its str()
    assert "request_id" not in third and context() == {}


def test_an_exception_is_a_traceback_field(captured: Captured) -> None:
    try:
        raise ValueError("bad input")
    except ValueError:
        logging.getLogger("tests.logs").exception("it failed")
    (line,) = captured.objects()
    assert line["level"] == "ERROR" and line["message"] == "it failed"
    assert line["traceback"].startswith("Traceback (most recent call last):")
    assert "ValueError: bad input" in line["traceback"]


def test_an_extra_field_wins_over_the_context(captured: Captured) -> None:
    token = bind(worker="w-context")
    try:
        logging.getLogger("tests.logs").info("x", extra={"worker": "w-extra"})
    finally:
        unbind(token)
    assert captured.objects()[0]["worker"] == "w-extra"


def test_the_text_format_adds_the_known_context_after_the_message() -> None:
    capture = Captured(TextFormatter())
    log = logging.getLogger("tests.logs.text")
    log.addHandler(capture.handler)
    log.propagate = False
    try:
        log.warning("no context")
        token = bind(task_id="t-9", attempt=2)
        try:
            log.warning("in an attempt")
        finally:
            unbind(token)
    finally:
        log.removeHandler(capture.handler)
        log.propagate = True
    first, second = capture.text.splitlines()
    assert first.endswith(" WARNING tests.logs.text: no context")
    assert second.endswith(" WARNING tests.logs.text: in an attempt [task_id=t-9 attempt=2]")


def test_configure_in_a_process_writes_json_lines_only() -> None:
    """A real process: its root logger is ours; warnings and uncaught exceptions (of a
    thread too) are JSON lines as well."""
    code = (
        "import logging, warnings\n"
        "from workers.logs import configure\n"
        "configure('INFO', 'json')\n"
        "logging.getLogger('a').debug('hidden')\n"
        "logging.getLogger('a').info('shown')\n"
        "warnings.warn('careful')\n"
        "import threading\n"
        "thread = threading.Thread(target=lambda: 1 / 0, name='helper')\n"
        "thread.start(); thread.join()\n"
        "raise RuntimeError('crash')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert [line["level"] for line in lines] == ["INFO", "WARNING", "CRITICAL", "CRITICAL"]
    assert lines[0]["message"] == "shown"
    assert "careful" in lines[1]["message"] and lines[1]["logger"] == "py.warnings"
    assert lines[2]["message"] == "uncaught exception in thread helper"
    assert "ZeroDivisionError" in lines[2]["traceback"]
    assert "RuntimeError: crash" in lines[3]["traceback"]


def test_configure_in_a_process_text_keeps_the_order() -> None:
    """Lines go out from a thread of their own; an uncaught exception comes after the
    lines logged before it, and nothing queued is lost at exit."""
    code = (
        "import logging\n"
        "from workers.logs import configure\n"
        "configure('INFO', 'text')\n"
        "for n in range(500):\n"
        "    logging.getLogger('a').info('line %d', n)\n"
        "raise RuntimeError('crash')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert [line.split(": ", 1)[1] for line in lines[:500]] == [f"line {n}" for n in range(500)]
    assert lines[500].endswith(" CRITICAL taskexec: uncaught exception")
    assert lines[501] == "Traceback (most recent call last):"
    assert lines[-1] == "RuntimeError: crash"


# An attempt's lines: the handler's own, and its failure with the traceback.


def logs_then_fails(payload: Any, context: Any) -> Any:
    handler_log.info("working on %s", payload["n"])
    raise LookupError(f"no {payload['n']}")


async def logs_async(payload: Any, context: Any) -> Any:
    handler_log.info("async on %s", payload["n"])
    return payload


@inline
def logs_inline(payload: Any, context: Any) -> Any:
    handler_log.info("inline on %s", payload["n"])
    raise KeyError("gone")


def work(handler: str) -> WorkItem:
    return WorkItem(
        task_id="task-7",
        attempt=3,
        task_type="AUTOMATED",
        definition_id="d",
        input={"n": 5},
        timeout_ms=5000,
        priority="NORMAL",
        handler=f"{HERE}:{handler}",
    )


def attempt_of(handler: str) -> Attempt:
    return Attempt(work(handler), "worker-1", HandlerRegistry(), IntegrationExecutor())


WHOSE = {"task_id": "task-7", "attempt": 3, "worker": "worker-1"}


@pytest.mark.parametrize("handler", ["logs_then_fails", "logs_async"])
async def test_an_attempts_lines_name_its_task_attempt_and_worker(
    captured: Captured, handler: str
) -> None:
    result = await asyncio.ensure_future(attempt_of(handler).run())
    assert result is not None
    lines = captured.objects()
    said = [line for line in lines if line["logger"] == "tests.handler"]
    assert len(said) == 1 and said[0]["message"].endswith("on 5")
    assert {k: said[0].get(k) for k in WHOSE} == WHOSE
    failed = [line for line in lines if line["logger"] == "workers.attempt"]
    if handler == "logs_async":
        assert result.kind == "completed" and failed == []
        return
    assert result.kind == "failed"
    (line,) = failed
    assert line["level"] == "WARNING"
    assert line["message"] == "attempt 3 of task-7 failed: LookupError: no 5"
    assert {k: line.get(k) for k in WHOSE} == WHOSE
    assert "LookupError: no 5" in line["traceback"]
    assert context() == {}  # nothing leaked into the caller's context


def test_an_inline_attempt_binds_its_context_only_while_it_runs(captured: Captured) -> None:
    attempt = attempt_of("logs_inline")
    handler = attempt.inline_handler()
    assert handler is not None
    result = attempt.run_inline(handler)
    assert result.kind == "failed" and result.error_type == "KeyError"
    logging.getLogger("tests.handler").info("afterwards")
    said, failed, afterwards = captured.objects()
    assert {k: said.get(k) for k in WHOSE} == WHOSE
    assert {k: failed.get(k) for k in WHOSE} == WHOSE and "KeyError" in failed["traceback"]
    assert not set(WHOSE) & set(afterwards)
