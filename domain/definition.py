"""TaskDefinition: what a kind of task is, how it runs, what its input and output look like."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from domain.concurrency_limit import limit_of
from domain.errors import InvalidValue
from domain.executor_pool import pool_of
from domain.integration_auth import parse_auth
from domain.resources import Resources, parse_resources
from domain.values import RetryPolicy, TaskType

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_HANDLER = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")
DEFAULT_TIMEOUT_MS = 3_600_000


@dataclass(frozen=True)
class TaskDefinition:
    """A registered kind of task, in the shape of the spec's ``GET /definitions/{id}`` body."""

    id: str
    name: str
    description: str
    type: TaskType
    version: str
    input_schema: dict[str, Any] = field(default_factory=dict)
    output_schema: dict[str, Any] = field(default_factory=dict)
    timeout_ms: int = DEFAULT_TIMEOUT_MS
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy)
    execution_config: dict[str, Any] = field(default_factory=dict)
    # executionConfig's resourceRequirements, parsed when loaded (domain/resources.py).
    resources: Resources = field(default_factory=Resources, compare=False)

    @property
    def handler(self) -> str | None:
        value = self.execution_config.get("handler")
        return value if isinstance(value, str) else None

    @property
    def executor(self) -> str:
        """The pool of workers that runs this definition's tasks (domain/executor_pool.py)."""
        return pool_of(self.execution_config)

    @property
    def max_concurrency(self) -> int | None:
        """How many of its attempts may run at once, across all workers (None: no limit;
        domain/concurrency_limit.py)."""
        return limit_of(self.execution_config)

    @property
    def endpoint(self) -> str | None:
        value = self.execution_config.get("endpoint")
        return value if isinstance(value, str) else None

    def to_document(self) -> dict[str, Any]:
        """The normalised camelCase document (the spec's definition body, without times)."""
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "type": self.type.value,
            "version": self.version,
            "inputSchema": self.input_schema,
            "outputSchema": self.output_schema,
            "timeout": self.timeout_ms,
            "retryPolicy": retry_policy_document(self.retry_policy),
            "executionConfig": self.execution_config,
        }

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> TaskDefinition:
        """Build from the camelCase document of a definition file; raise InvalidValue if off."""
        if not isinstance(doc, dict):
            raise InvalidValue("a definition must be an object")
        def_id = _required_str(doc, "id")
        if not _ID.fullmatch(def_id):
            raise InvalidValue(f"id {def_id!r} must match {_ID.pattern}")
        try:
            task_type = TaskType(_required_str(doc, "type"))
        except ValueError:
            raise InvalidValue(
                f"{def_id}: type must be one of {', '.join(t.value for t in TaskType)}"
            ) from None
        execution_config = _optional_dict(doc, "executionConfig", def_id)
        definition = cls(
            id=def_id,
            name=_required_str(doc, "name"),
            description=_optional_str(doc, "description"),
            type=task_type,
            version=_required_str(doc, "version"),
            input_schema=_optional_dict(doc, "inputSchema", def_id),
            output_schema=_optional_dict(doc, "outputSchema", def_id),
            timeout_ms=_positive_int(doc.get("timeout", DEFAULT_TIMEOUT_MS), "timeout", def_id),
            retry_policy=retry_policy_from_document(
                _optional_dict(doc, "retryPolicy", def_id), def_id
            ),
            execution_config=execution_config,
            resources=_resources(execution_config, def_id),
        )
        definition._check_binding()
        return definition

    def _check_binding(self) -> None:
        if self.type is TaskType.AUTOMATED:
            if self.handler is None or not _HANDLER.fullmatch(self.handler):
                raise InvalidValue(
                    f"{self.id}: AUTOMATED definitions need executionConfig.handler "
                    "of the form 'package.module:function'"
                )
        elif self.type is TaskType.INTEGRATION:
            if not self.endpoint:
                raise InvalidValue(
                    f"{self.id}: INTEGRATION definitions need executionConfig.endpoint"
                )
            if "auth" in self.execution_config:
                try:
                    parse_auth(self.execution_config["auth"])
                except InvalidValue as exc:
                    raise InvalidValue(f"{self.id}: {exc}") from None
        isolation = self.execution_config.get("isolation", "thread")
        if isolation not in ("thread", "process"):
            raise InvalidValue(f"{self.id}: executionConfig.isolation must be thread or process")


def _resources(execution_config: dict[str, Any], def_id: str) -> Resources:
    try:
        pool_of(execution_config)  # checked with the rest of executionConfig
        limit_of(execution_config)
        return parse_resources(execution_config)
    except InvalidValue as exc:
        raise InvalidValue(f"{def_id}: {exc}") from None


def retry_policy_document(policy: RetryPolicy) -> dict[str, Any]:
    """The camelCase ``retryPolicy`` object; the optional fields only when set."""
    doc: dict[str, Any] = {
        "maxRetries": policy.max_retries,
        "retryInterval": policy.retry_interval_ms,
        "backoffMultiplier": policy.backoff_multiplier,
    }
    if policy.max_interval_ms is not None:
        doc["maxInterval"] = policy.max_interval_ms
    if policy.non_retryable_errors:
        doc["nonRetryableErrors"] = list(policy.non_retryable_errors)
    return doc


def retry_policy_from_document(doc: Any, where: str) -> RetryPolicy:
    """Parse the spec's camelCase ``retryPolicy`` object."""
    if not isinstance(doc, dict):
        raise InvalidValue(f"{where}: retryPolicy must be an object")
    defaults = RetryPolicy()
    multiplier = doc.get("backoffMultiplier", defaults.backoff_multiplier)
    if (
        isinstance(multiplier, bool)
        or not isinstance(multiplier, int | float)
        or not math.isfinite(multiplier)
        or multiplier < 1
    ):
        raise InvalidValue(f"{where}: retryPolicy.backoffMultiplier must be a number >= 1")
    return RetryPolicy(
        max_retries=_non_negative_int(
            doc.get("maxRetries", defaults.max_retries), "retryPolicy.maxRetries", where
        ),
        retry_interval_ms=_non_negative_int(
            doc.get("retryInterval", defaults.retry_interval_ms), "retryPolicy.retryInterval", where
        ),
        backoff_multiplier=float(multiplier),
        max_interval_ms=_optional_non_negative_int(doc, "maxInterval", where),
        non_retryable_errors=_names(doc.get("nonRetryableErrors", []), where),
    )


def _optional_non_negative_int(doc: dict[str, Any], key: str, where: str) -> int | None:
    value = doc.get(key)
    return None if value is None else _non_negative_int(value, f"retryPolicy.{key}", where)


def _names(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InvalidValue(f"{where}: retryPolicy.nonRetryableErrors must be a list of names")
    return tuple(value)


def _required_str(doc: dict[str, Any], key: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InvalidValue(f"definition {doc.get('id', '?')!s}: {key} must be a non-empty string")
    return value


def _optional_str(doc: dict[str, Any], key: str) -> str:
    value = doc.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidValue(f"definition {doc.get('id', '?')!s}: {key} must be a string")
    return value


def _optional_dict(doc: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = doc.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidValue(f"{where}: {key} must be an object")
    return value


def _non_negative_int(value: Any, key: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidValue(f"{where}: {key} must be a non-negative integer")
    return value


def _positive_int(value: Any, key: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidValue(f"{where}: {key} must be a positive integer")
    return value
