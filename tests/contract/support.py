"""Commands and reports as the contract cases write them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from commands.messages import RecordReport, SubmitTask
from domain.values import Actor
from tests.conftest import EXAMPLE_INPUT

ALICE = Actor("alice", "jwt")


def order(**overrides: Any) -> SubmitTask:
    """A valid submit of calculate-order-total by ALICE, with ``overrides``."""
    fields: dict[str, Any] = {
        "definition_id": "calculate-order-total",
        "input": EXAMPLE_INPUT,
        "actor": ALICE,
    }
    fields.update(overrides)
    return SubmitTask(**fields)


def report(task_id: UUID, attempt: int, kind: str, **fields: Any) -> RecordReport:
    """A report of worker w-1 (unless ``worker`` says otherwise), made now."""
    fields.setdefault("worker", "w-1")
    fields.setdefault("at", datetime.now(UTC))
    return RecordReport(task_id=task_id, attempt=attempt, kind=kind, **fields)
