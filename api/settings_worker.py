"""The forms of a worker's settings: its executor pools and what it offers to requests
(api/settings.py reads them; ``taskexec worker``'s options use the same parsers)."""

from __future__ import annotations

from domain.errors import InvalidValue
from domain.executor_pool import parse_pools
from domain.resources import parse_cpu, parse_memory


def parse_worker_cpus(name: str, text: object) -> int:
    """A worker's cpu capacity (``2``, ``1.5``, ``500m``) in millicores; else a ValueError
    naming ``name``."""
    try:
        return parse_cpu(str(text).strip(), name)
    except InvalidValue as exc:
        raise ValueError(str(exc)) from None


def parse_worker_memory(name: str, text: object) -> int:
    """A worker's memory capacity (``4Gi``, ``512Mi``, ``1G``) in bytes; else a ValueError
    naming ``name``."""
    try:
        return parse_memory(str(text).strip(), name)
    except InvalidValue as exc:
        raise ValueError(str(exc)) from None


def parse_executors(name: str, text: str) -> tuple[str, ...]:
    """Executor pool names, comma-separated (``gpu,standard-executor``); else a ValueError
    naming ``name`` (domain/executor_pool.py: the form of a pool name)."""
    try:
        return parse_pools(text, name)
    except InvalidValue as exc:
        raise ValueError(str(exc)) from None


def check_executors(name: str, pools: tuple[str, ...]) -> None:
    """Pools set in code are held to the same form."""
    parse_executors(name, ",".join(pools))


def check_positive_int(name: str, value: int) -> None:
    """A capacity made in code: a positive whole number (millicores, bytes)."""
    good = isinstance(value, int) and not isinstance(value, bool) and value > 0
    if not good:
        raise ValueError(f"{name}={value!r}: use a positive whole number")
