"""A progress line for long commands: done / total, rate, ETA (stderr)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """Redraws one line on a terminal; prints a line every few seconds otherwise."""

    def __init__(
        self,
        label: str,
        stream: TextIO = sys.stderr,
        width: int = 30,
        unit: tuple[str, str] = ("events", "ev/s"),
    ) -> None:
        """``unit``: what is counted, and its rate's name (``("tasks", "tasks/s")``)."""
        self._label = label
        self._unit, self._rate_unit = unit
        self._stream = stream
        self._width = width
        self._tty = stream.isatty()
        self._started = time.monotonic()
        self._last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        final = total > 0 and done >= total
        if not final and now - self._last < (0.1 if self._tty else 5.0):
            return
        self._last = now
        self._stream.write(self.render(done, total, now - self._started))
        self._stream.write("\r" if self._tty and not final else "\n")
        self._stream.flush()

    def render(self, done: int, total: int, elapsed: float) -> str:
        fraction = min(1.0, done / total) if total else 1.0
        filled = int(fraction * self._width)
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if rate > 0 and total > done else 0.0
        bar = "#" * filled + "-" * (self._width - filled)
        return (
            f"{self._label} [{bar}] {done:,}/{total:,} {self._unit} "
            f"{fraction:6.1%} {rate:,.0f} {self._rate_unit} ETA {eta:,.0f}s"
        )
