"""Whether JetStream can serve our streams, logged once per change of state.

A worker (or ``serve``'s health check) asks JetStream something every second or so.
When the streams cannot answer (no connection, no stream leader, no quorum), logging
every failed check would bury the log in identical lines for as long as the outage
lasts. ``StreamState`` is fed the outcome of each check and logs only the changes: a
WARNING when the checks start failing, an INFO when they succeed again (with how long
long since the last good check), and nothing in between.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class StreamState:
    """Reachable until a check fails; each change of state is logged once."""

    def __init__(
        self,
        what: str,
        logger: logging.Logger,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._what = what
        self._log = logger
        self._clock = clock
        self._failing_since: float | None = None
        self._last_ok: float | None = None
        self._failures = 0

    @property
    def reachable(self) -> bool:
        """False from a failed check until the next successful one."""
        return self._failing_since is None

    def ok(self) -> None:
        """A check succeeded: log the recovery if the previous ones failed."""
        now = self._clock()
        if self._failing_since is not None:
            self._log.info(
                "%s reachable again, %.1f s after the last good check (%d failed checks)",
                self._what,
                now - self._failing_since,
                self._failures,
            )
            self._failing_since = None
            self._failures = 0
        self._last_ok = now

    def failed(self, reason: str | BaseException) -> None:
        """A check failed: log it if it is the first failure since the last success."""
        self._failures += 1
        if self._failing_since is not None:
            return
        # A check can take seconds to fail (a timeout): the outage began before that.
        self._failing_since = self._clock() if self._last_ok is None else self._last_ok
        self._log.warning("%s unreachable: %s", self._what, describe(reason))


def describe(reason: str | BaseException) -> str:
    """A one-line reason: an exception's type and message (nats-py's are often empty)."""
    if isinstance(reason, BaseException):
        text = str(reason)
        return f"{type(reason).__name__}: {text}" if text else type(reason).__name__
    return reason


__all__ = ["StreamState", "describe"]
