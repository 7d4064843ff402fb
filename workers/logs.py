"""Logs: one format for every process (``TASKEXEC_LOG_FORMAT``), and the context fields
that say what a line is about.

- ``text``: ``<local time> <LEVEL> <logger>: <message> [request_id=… task_id=…]`` (the
  brackets only when a context field is known), then the traceback, if any.
- ``json``: one object per line: ``time`` (RFC 3339, UTC, milliseconds, ``Z``),
  ``level``, ``logger``, ``message``; the context fields that are known
  (``request_id``, ``trace_id``, ``task_id``, ``attempt``, ``worker``); any field a call
  passes with ``extra=`` (the access log's, api/http/access_log.py); ``traceback`` when
  the record carries an exception.

The context lives in a contextvar (``bind``/``unbind``): the access log binds a request
id around a request, an attempt binds its task, attempt and worker around its handler.
asyncio tasks and ``to_thread`` copy it, so whatever runs on their behalf is tagged too;
``ContextFilter`` copies it onto each record. ``trace_id`` is reserved for tracing: no
code binds it yet. Used by ``serve`` and ``worker`` alike: nothing here may import more
than the standard library and msgspec.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import logging.handlers
import sys
import threading
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from queue import Empty, SimpleQueue
from types import MappingProxyType, TracebackType
from typing import Any, TextIO

import msgspec

LOG_FORMATS = ("text", "json")
CONTEXT_FIELDS = ("request_id", "trace_id", "task_id", "attempt", "worker")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_EMPTY: Mapping[str, object] = MappingProxyType({})
_context: ContextVar[Mapping[str, object]] = ContextVar("taskexec_log_context", default=_EMPTY)
# LogRecord's own attributes (and those the stdlib and uvicorn add): never extra fields.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}
_encoder = msgspec.json.Encoder(enc_hook=str)  # anything else msgspec cannot encode: str()


def bind(**fields: object) -> Token[Mapping[str, object]]:
    """Add context fields for what runs from here on (in this task or thread, and in
    the tasks it creates); ``unbind`` the token to restore the previous ones."""
    return _context.set({**_context.get(), **fields})


def unbind(token: Token[Mapping[str, object]]) -> None:
    _context.reset(token)


def context() -> Mapping[str, object]:
    """The context fields bound here."""
    return _context.get()


class ContextFilter(logging.Filter):
    """Copies the bound context fields onto each record (a field the call passed with
    ``extra=`` wins). Put on a handler: it runs in the thread and context of the call."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = _context.get()
        if fields:
            attributes = record.__dict__
            for name, value in fields.items():
                attributes.setdefault(name, value)
        return True


class TextFormatter(logging.Formatter):
    """The classic line, with the known context fields in brackets after the message."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._cached = (-1, "")  # (second, its text): one tuple, safe across threads

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """As logging.Formatter's (local time, ``2026-12-07 17:04:05,123``); the part up
        to the second is kept for reuse."""
        second, text = self._cached
        if second != int(record.created):
            second = int(record.created)
            text = time.strftime(self.default_time_format, self.converter(second))
            self._cached = (second, text)
        return f"{text},{int(record.msecs):03d}"

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        attributes = record.__dict__
        known = [f"{name}={attributes[name]}" for name in CONTEXT_FIELDS if name in attributes]
        return f"{line} [{' '.join(known)}]" if known else line


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def __init__(self) -> None:
        super().__init__()
        self._cached = (-1, "")  # (second, its text): one tuple, safe across threads

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self._time(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in record.__dict__.items():
            if name not in _STANDARD and name[0] != "_":
                line[name] = value
        if record.exc_info and not record.exc_text:  # as logging.Formatter: once per record
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["traceback"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return _encoder.encode(line).decode()

    def _time(self, record: logging.LogRecord) -> str:
        """``2026-12-07T17:04:05.123Z``; the part up to the second is kept for reuse."""
        second, text = self._cached
        if second != int(record.created):
            second = int(record.created)
            text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._cached = (second, text)
        return f"{text}.{int(record.msecs):03d}Z"


def formatter(log_format: str) -> logging.Formatter:
    """The formatter of a ``TASKEXEC_LOG_FORMAT`` value."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"unknown log format {log_format!r} (use text or json)")
    return JsonFormatter() if log_format == "json" else TextFormatter()


class Writer:
    """Formats and writes records in a thread of its own: the caller (the event loop)
    never waits for a write, nor for the GIL after one, and the lines of 50 ms go out
    together, in one write (a thread woken per line costs the loop more than the line).
    What is queued when the process ends normally is written then (``stop``, at exit);
    a process killed outright loses its last moment of lines."""

    BATCH = 4096  # lines per write at most
    GATHER_S = 0.05  # how long a line may wait for others to share its write

    def __init__(self, stream: TextIO, formatter: logging.Formatter) -> None:
        self.queue: SimpleQueue[logging.LogRecord | None] = SimpleQueue()
        self._stream = stream
        self._formatter = formatter
        self._thread = threading.Thread(target=self._run, name="taskexec-log", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Write what is queued, then end the thread."""
        if self._thread.is_alive():
            self.queue.put(None)
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            batch = [self.queue.get()]  # idle: blocked here, no wake-ups
            if batch[0] is not None:
                time.sleep(self.GATHER_S)  # one wake-up per burst, not per line
            with contextlib.suppress(Empty):
                while len(batch) < self.BATCH and batch[-1] is not None:
                    batch.append(self.queue.get_nowait())
            text = "".join(self._line(record) for record in batch if record is not None)
            with contextlib.suppress(OSError, ValueError):  # a closed stream: nothing to do
                self._stream.write(text)
                self._stream.flush()
            if batch[-1] is None:
                return

    def _line(self, record: logging.LogRecord) -> str:
        try:
            return self._formatter.format(record) + "\n"
        except Exception as exc:  # a line that cannot be formatted: say so, go on
            return f"{record.levelname} {record.name}: {record.msg!r} (unformattable: {exc!r})\n"


class Handoff(logging.handlers.QueueHandler):
    """The root logger's handler: hands each record to the Writer. The message is made
    here, from its arguments as they are now; the line, in the writer's thread."""

    def __init__(self, writer: Writer) -> None:
        super().__init__(writer.queue)

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record.msg, record.args = record.getMessage(), None
        return record


def configure(level: str, log_format: str, stream: TextIO | None = None) -> None:
    """One handler on the root logger (stderr), in ``log_format``, with the context.
    Like ``logging.basicConfig``: nothing changes if the root logger has handlers
    already (a test runner's). Warnings and uncaught exceptions are logged too: in
    JSON every line stays an object, and in either format they come in order with the
    lines queued before them. httpx's INFO lines (every INTEGRATION call's URL) are
    left out unless ``level`` is DEBUG."""
    if logging.getLogger().handlers:
        return
    # Neither format shows the caller, thread or process: not looking them up per record
    # is the logging HOWTO's "Optimization" (about a fifth of an access line's cost).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    writer = Writer(stream or sys.stderr, formatter(log_format))
    handler = Handoff(writer)
    handler.addFilter(ContextFilter())  # here: in the context of the call
    logging.basicConfig(level=level, handlers=[handler])
    writer.start()
    atexit.register(writer.stop)  # before logging's own shutdown (atexit: last in, first)
    if level != "DEBUG":  # a line per HTTP call, with its URL (and any query string in it)
        logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught(sys.excepthook)
    threading.excepthook = _log_uncaught_in_thread


def _log_uncaught(previous: Callable[..., Any]) -> Callable[..., None]:
    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            previous(kind, exc, tb)
            return
        logging.getLogger("taskexec").critical("uncaught exception", exc_info=(kind, exc, tb))

    return hook


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if issubclass(args.exc_type, SystemExit) or args.exc_value is None:  # as the default
        return
    name = args.thread.name if args.thread is not None else "?"
    logging.getLogger("taskexec").critical(
        "uncaught exception in thread %s", name, exc_info=args.exc_value
    )
