"""Attempts whose worker vanished: failed (and so retried per policy) once nothing can
still report them.

An attempt may run for its timeout; JetStream redelivers unacked work after its ack wait.
An attempt with no report by start + timeout + ack wait + a margin is lost: its worker
died and no other took the work over. Which attempts are past their deadline is a
read-model query (passed in), what happens to them is the aggregate's rule
(``Task.expire_attempt`` through the service).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from uuid import UUID

from commands.service import TaskService

# Past the ack wait, before an attempt is declared lost (a redelivery may be on its way).
LEASE_MARGIN_S = 30.0

# (before) -> (task id, attempt) of RUNNING attempts whose deadline is earlier.
ExpiredLeases = Callable[[datetime], Iterable[tuple[str, int]]]


class LostAttempts:
    """Expires the attempts of ``expired_leases`` through ``service``."""

    def __init__(self, service: TaskService, expired_leases: ExpiredLeases, ack_wait_s: float):
        self._service = service
        self._expired_leases = expired_leases
        self.grace_s = ack_wait_s + LEASE_MARGIN_S

    def expire(self, grace_s: float | None = None, now: datetime | None = None) -> int:
        """Fail the attempts past their timeout + ``grace_s``; returns how many."""
        grace_s = self.grace_s if grace_s is None else grace_s
        before = (now or datetime.now(UTC)) - timedelta(seconds=grace_s)
        expired = 0
        for task_id, attempt in self._expired_leases(before):
            reason = f"no report from attempt {attempt} within its timeout + {grace_s:.0f} s"
            if self._service.expire_attempt(UUID(task_id), attempt, reason):
                expired += 1
        return expired
