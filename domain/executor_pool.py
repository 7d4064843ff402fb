"""Executor pools: ``executionConfig.executor`` names the pool of workers that runs a
definition's tasks (docs/definitions.md, executionConfig).

A pool name is a safe token for NATS subjects and consumer names: lower-case letters,
digits and ``-``, starting and ending with a letter or digit, at most 63 characters (a
DNS label, as Kubernetes names things). A definition without ``executor`` is in
``standard-executor``, the pool a worker takes when told nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from domain.errors import InvalidValue

DEFAULT_POOL = "standard-executor"
FIELD = "executionConfig.executor"
_POOL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_FORM = "lower-case letters, digits and '-', starting and ending with a letter or digit, at most 63"


def check_pool(name: Any, where: str = FIELD) -> str:
    """``name`` if it is a pool name; else an InvalidValue naming ``where``."""
    if not isinstance(name, str):
        raise InvalidValue(f"{where} must be a string: {_FORM}")
    if not _POOL.fullmatch(name):
        raise InvalidValue(f"{where} {name[:70]!r} is not a pool name: {_FORM}")
    return name


def pool_of(execution_config: dict[str, Any]) -> str:
    """The pool of a definition's ``executionConfig`` (checked: InvalidValue naming
    ``executionConfig.executor``); the default pool when it names none."""
    executor = execution_config.get("executor")
    return DEFAULT_POOL if executor is None else check_pool(executor)


def parse_pools(text: str, where: str) -> tuple[str, ...]:
    """A comma-separated list of pool names (``--executors``, ``TASKEXEC_WORKER_EXECUTORS``):
    each checked, repeats dropped, in the order given; InvalidValue naming ``where`` when
    one is not a pool name or none is given."""
    pools = unique(check_pool(part.strip(), where) for part in text.split(",") if part.strip())
    if not pools:
        raise InvalidValue(f"{where} names no pool: give one or more, comma-separated")
    return pools


def unique(pools: Iterable[str]) -> tuple[str, ...]:
    """``pools`` without repeats, in their first order."""
    return tuple(dict.fromkeys(pools))
