"""Idempotent submission: task ids derived from (principal, Idempotency-Key).

The id of a task submitted with a key is ``uuid5(namespace, kind, principal, key)``, so a
retry names the same aggregate, and the event store's uniqueness of (aggregate id, version)
makes concurrent duplicates safe: exactly one save wins, the others see the winner. The
``Submitted`` event records a fingerprint of the request, so a retry with a different body
is recognised. Keys are scoped per principal and per tenant: two clients can never collide
or see each other's tasks through a key, nor can one JWT subject sent with two tenants'
claims. A principal without a tenant derives the ids it always did.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC
from typing import Any
from uuid import UUID, uuid5

from commands.messages import SubmitTask
from domain.values import RetryOverrides, RetryPolicy

# Fixed forever: stored task ids are derived from it.
IDEMPOTENCY_NAMESPACE = UUID("0c5d7f3e-8a21-5b94-a6c2-71e3f0b9d845")
# Fixed forever too: the ids of keyed submits of a principal with a tenant. A namespace of
# their own, so that no tenant's id can equal an id derived without a tenant.
TENANT_IDEMPOTENCY_NAMESPACE = UUID("7a4e2c91-3d5b-5f08-b6e1-9c2d8f4a0b37")
KEY_MAX = 255
# Visible ASCII only: a header value, and the same string whatever the client's encoding.
_KEY = re.compile(r"[\x21-\x7e]{1,255}")


def valid_key(key: str) -> bool:
    return _KEY.fullmatch(key) is not None


def task_id_for(cmd: SubmitTask, key: str) -> UUID:
    """The task id that ``cmd``'s principal (in its tenant) gets for ``key``, the same on
    every retry. A tenant's name holds no separator (domain/tenancy.py): it leads."""
    scope = f"{cmd.actor.kind}\x1f{cmd.actor.id}\x1f{key}"
    if cmd.tenant is None:
        return uuid5(IDEMPOTENCY_NAMESPACE, scope)
    return uuid5(TENANT_IDEMPOTENCY_NAMESPACE, f"{cmd.tenant}\x1f{scope}")


def fingerprint(cmd: SubmitTask) -> str:
    """SHA-256 of the request's canonical JSON: what "the same body" means.

    It covers what the client asked for (definition, input, workflow, priority, timeout,
    the retry fields it gave, the schedule as given) after parsing, so key order and
    whitespace do not matter; the principal is already part of the task id.
    """
    canonical: dict[str, Any] = {
        "definition_id": cmd.definition_id,
        "input": _numbers_as_values(cmd.input),
        "workflow_instance_id": cmd.workflow_instance_id,
        "priority": cmd.priority.value,
        "timeout_ms": cmd.timeout_ms,
        "retry_policy": _retry(cmd.retry_policy),
    }
    # Only when given: a request without a schedule hashes as it did before they existed.
    if cmd.scheduled_at is not None:
        canonical["scheduled_at"] = cmd.scheduled_at.astimezone(UTC).isoformat()
    if cmd.delay_seconds is not None:
        canonical["delay_seconds"] = cmd.delay_seconds
    text = json.dumps(
        canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


_SPEC_RETRY_FIELDS = {"max_retries", "retry_interval_ms", "backoff_multiplier"}


def _retry(overrides: RetryOverrides | None) -> dict[str, Any] | None:
    """The retry fields a request gave (None: none, as if it sent no retryPolicy).

    A request that gave exactly the spec's three fields hashes as it did when a task's
    policy replaced the definition's whole (a full policy with the two extensions unset),
    so an idempotent retry that spans that upgrade is still the same request. That form
    holds ``max_interval_ms: None``, which no other form holds: the two never collide.
    """
    given = overrides.given() if overrides is not None else {}
    if not given:
        return None
    if set(given) == _SPEC_RETRY_FIELDS:
        return RetryPolicy(**given).as_dict()
    return {name: list(v) if isinstance(v, tuple) else v for name, v in given.items()}


def _numbers_as_values(value: Any) -> Any:
    """JSON does not tell 2 from 2.0: hash whole floats as integers, so a client that
    re-encodes the same body differently is still sending the same request."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _numbers_as_values(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers_as_values(v) for v in value]
    return value
