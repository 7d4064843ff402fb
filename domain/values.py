"""Value objects: statuses, priorities, task types, retry policy, actors."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from domain.errors import InvalidValue


class TaskStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMED_OUT = "TIMED_OUT"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset(
    {TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.TIMED_OUT}
)


class TaskType(StrEnum):
    AUTOMATED = "AUTOMATED"
    MANUAL = "MANUAL"
    INTEGRATION = "INTEGRATION"


class Priority(StrEnum):
    """Task priorities, highest first in ``Priority.ordered()``."""

    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"

    @classmethod
    def ordered(cls) -> list[Priority]:
        """Highest priority first: the order in which workers probe their queues."""
        return [cls.CRITICAL, cls.HIGH, cls.MEDIUM, cls.LOW]


MAX_DELAY_MS = 30 * 24 * 3600 * 1000  # no retry is ever scheduled further out than 30 days


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how late a failed attempt is tried again.

    The delay before attempt n+1 is ``retry_interval_ms * backoff_multiplier ** (n - 1)``,
    capped by ``max_interval_ms`` (beyond the spec; optional). Errors whose type is in
    ``non_retryable_errors`` (beyond the spec) fail the task at once. A definition has
    one; a task's is its definition's ``overridden_by`` the task's own RetryOverrides.
    """

    max_retries: int = 0
    retry_interval_ms: int = 60_000
    backoff_multiplier: float = 2.0
    max_interval_ms: int | None = None
    non_retryable_errors: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise InvalidValue("maxRetries must be >= 0")
        if self.retry_interval_ms < 0:
            raise InvalidValue("retryInterval must be >= 0")
        if not math.isfinite(self.backoff_multiplier) or self.backoff_multiplier < 1:
            raise InvalidValue("backoffMultiplier must be >= 1")
        if self.max_interval_ms is not None and self.max_interval_ms < 0:
            raise InvalidValue("maxInterval must be >= 0")
        object.__setattr__(self, "non_retryable_errors", tuple(self.non_retryable_errors))
        if not all(isinstance(name, str) and name for name in self.non_retryable_errors):
            raise InvalidValue("nonRetryableErrors must be non-empty error type names")

    def delay_ms(self, failed_attempt: int) -> int:
        """Milliseconds to wait after ``failed_attempt`` (1-based) failed."""
        cap = MAX_DELAY_MS if self.max_interval_ms is None else self.max_interval_ms
        exponent = max(0, failed_attempt - 1)
        if self.retry_interval_ms == 0:
            return 0
        growth_limit = math.log(MAX_DELAY_MS / self.retry_interval_ms)
        if exponent * math.log(self.backoff_multiplier) > growth_limit:
            return min(cap, MAX_DELAY_MS)  # past 30 days: no float overflow for huge n
        delay = self.retry_interval_ms * self.backoff_multiplier**exponent
        return int(min(delay, cap, MAX_DELAY_MS))

    def allows_retry(self, failed_attempt: int, error_type: str, retryable: bool) -> bool:
        """Whether a failure of ``failed_attempt`` (1-based) gets another attempt."""
        return (
            retryable
            and error_type not in self.non_retryable_errors
            and failed_attempt <= self.max_retries
        )

    def overridden_by(self, task: RetryOverrides | None) -> RetryPolicy:
        """The policy of a task of a definition with this policy: field by field, what the
        task gave wins, what it left out stays (docs/execution.md, Retries)."""
        if task is None:
            return self
        return dataclasses.replace(self, **task.given())

    def as_dict(self) -> dict[str, Any]:
        # Spelled out: dataclasses.asdict deep-copies field by field, once per submit.
        return {
            "max_retries": self.max_retries,
            "retry_interval_ms": self.retry_interval_ms,
            "backoff_multiplier": self.backoff_multiplier,
            "max_interval_ms": self.max_interval_ms,
            "non_retryable_errors": list(self.non_retryable_errors),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RetryPolicy:
        fields = dict(data)
        fields["non_retryable_errors"] = tuple(fields.get("non_retryable_errors", ()))
        return cls(**fields)


@dataclass(frozen=True)
class RetryOverrides:
    """A task's own retry settings (a submit's ``executionConfig.retryPolicy``), each None
    when not given. Not a policy: ``RetryPolicy.overridden_by`` merges them over the
    definition's. A given ``non_retryable_errors`` replaces the definition's list (``()``
    clears it); a task cannot remove the definition's ``max_interval_ms``, only set another.
    The given values obey RetryPolicy's checks (InvalidValue)."""

    max_retries: int | None = None
    retry_interval_ms: int | None = None
    backoff_multiplier: float | None = None
    max_interval_ms: int | None = None
    non_retryable_errors: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.backoff_multiplier is not None:
            object.__setattr__(self, "backoff_multiplier", float(self.backoff_multiplier))
        if self.non_retryable_errors is not None:
            object.__setattr__(self, "non_retryable_errors", tuple(self.non_retryable_errors))
        RetryPolicy().overridden_by(self)  # refused now, by the checks of any policy

    def given(self) -> dict[str, Any]:
        """The fields given, by RetryPolicy's field names."""
        return {
            field.name: value
            for field in dataclasses.fields(self)
            if (value := getattr(self, field.name)) is not None
        }


@dataclass(frozen=True)
class Actor:
    """Who caused an event: a principal of the API, a worker, a person at the CLI, or the
    system itself."""

    id: str
    # "jwt" | "apikey" (api/security), "worker" (commands/reports.py), "operator" (the
    # apikey CLI, on API key events only), "system" (SYSTEM, the CLI's development key)
    kind: str

    def as_dict(self) -> dict[str, str]:
        return {"id": self.id, "kind": self.kind}


SYSTEM = Actor(id="taskexec", kind="system")
# For tests and benchmarks that call commands directly: no request path records it.
ANONYMOUS = Actor(id="anonymous", kind="anonymous")
