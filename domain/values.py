"""Value objects: statuses, priorities, task types, retry policy, actors."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from domain.errors import InvalidValue


class TaskStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})


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


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how late a failed attempt is tried again.

    The delay before attempt n+1 is ``retry_interval_ms * backoff_multiplier ** (n - 1)``.
    """

    max_retries: int = 0
    retry_interval_ms: int = 60_000
    backoff_multiplier: float = 2.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise InvalidValue("maxRetries must be >= 0")
        if self.retry_interval_ms < 0:
            raise InvalidValue("retryInterval must be >= 0")
        if not math.isfinite(self.backoff_multiplier) or self.backoff_multiplier < 1:
            raise InvalidValue("backoffMultiplier must be >= 1")

    def delay_ms(self, failed_attempt: int) -> int:
        """Milliseconds to wait after ``failed_attempt`` (1-based) failed."""
        return int(self.retry_interval_ms * self.backoff_multiplier ** (failed_attempt - 1))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RetryPolicy:
        return cls(**data)


@dataclass(frozen=True)
class Actor:
    """Who caused an event: a principal of the API, a worker, or the system itself."""

    id: str
    kind: str  # "anonymous" | "jwt" | "apikey" | "worker" | "system"

    def as_dict(self) -> dict[str, str]:
        return {"id": self.id, "kind": self.kind}


SYSTEM = Actor(id="taskexec", kind="system")
ANONYMOUS = Actor(id="anonymous", kind="anonymous")
