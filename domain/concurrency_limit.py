"""Concurrency limits: ``executionConfig.maxConcurrency`` caps how many attempts of a
definition's tasks run at once across all workers (docs/definitions.md, executionConfig;
the workers' side: workers/limited_queues.py).

A positive whole number, at most ``MAX_CONCURRENCY``; absent (or null): no limit. Checked
when the definition is loaded, an InvalidValue naming the field otherwise.
"""

from __future__ import annotations

from typing import Any

from domain.errors import InvalidValue

FIELD = "executionConfig.maxConcurrency"
MAX_CONCURRENCY = 10_000


def check_max_concurrency(value: Any, where: str = FIELD) -> int | None:
    """``value`` if it is a limit (None: no limit); else an InvalidValue naming ``where``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidValue(f"{where} must be a whole number from 1 to {MAX_CONCURRENCY}")
    if not 1 <= value <= MAX_CONCURRENCY:
        raise InvalidValue(f"{where} {value} is out of range: from 1 to {MAX_CONCURRENCY}")
    return value


def limit_of(execution_config: dict[str, Any]) -> int | None:
    """The limit a definition's ``executionConfig`` gives (checked); None: unlimited."""
    return check_max_concurrency(execution_config.get("maxConcurrency"))
