"""What a definition's ``executionConfig`` says about resources and isolation, checked when
the definition is loaded: ``resourceRequirements`` (``cpu``, ``memory`` as Kubernetes
quantities, ``timeoutSeconds``) and ``securityContext`` (``securityLevel``, ``allowEnv``).

Quantities as Kubernetes writes them: ``memory`` in bytes, plain (``134217728``), with a
decimal suffix (``k M G T P E``: powers of 1000), a binary one (``Ki Mi Gi Ti Pi Ei``:
powers of 1024) or an exponent (``129e6``); ``cpu`` in cores (``1``, ``0.5``) or
millicores (``500m``), at least ``1m``. ``timeoutSeconds`` caps the attempt's timeout: of
it and the task's timeout (its own, else its definition's), the lower wins.
``securityContext.allowEnv``: names of the worker's environment variables a ``HIGH`` attempt
may see (it sees no other but a few harmless ones: workers/sandbox.py); never a
``TASKEXEC_*`` one (the worker's own settings).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from domain.errors import InvalidValue

SECURITY_LEVELS = ("LOW", "MEDIUM", "HIGH")
_QUANTITY = re.compile(r"([0-9]+(?:\.[0-9]+)?|\.[0-9]+)([eE][+-]?[0-9]+|[kMGTPE]i?|Ki|m)?")
_DECIMAL = {"k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_RESOURCE_KEYS = ("cpu", "memory", "timeoutSeconds")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


@dataclass(frozen=True)
class Resources:
    """A definition's resource requirements, parsed (None: not given)."""

    millicpu: int | None = None
    memory_bytes: int | None = None
    timeout_ms: int | None = None
    security_level: str = "LOW"
    allow_env: tuple[str, ...] = ()

    def execution(self) -> dict[str, Any]:
        """What a worker needs of these, for a task's ``execution`` (what it records, and
        its work items carry): only what is set, so that tasks of definitions without
        them look as before."""
        fields: dict[str, Any] = {}
        if self.millicpu is not None:
            fields["cpu"] = self.millicpu
        if self.memory_bytes is not None:
            fields["memory"] = self.memory_bytes
        if self.security_level != "LOW":
            fields["securityLevel"] = self.security_level
        if self.allow_env:
            fields["allowEnv"] = list(self.allow_env)
        return fields


def parse_resources(config: dict[str, Any]) -> Resources:
    """``executionConfig``'s resource requirements and security level, checked: an
    InvalidValue naming the field (``executionConfig.resourceRequirements.memory``)."""
    level, allow_env = _security(config.get("securityContext"))
    given = config.get("resourceRequirements")
    if given is None:
        return Resources(security_level=level, allow_env=allow_env)
    where = "executionConfig.resourceRequirements"
    if not isinstance(given, dict):
        raise InvalidValue(f"{where} must be an object")
    unknown = sorted(set(given) - set(_RESOURCE_KEYS))
    if unknown:
        raise InvalidValue(
            f"{where}.{unknown[0]} is not a resource: use {', '.join(_RESOURCE_KEYS)}"
        )
    timeout = given.get("timeoutSeconds")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int) or timeout <= 0
    ):
        raise InvalidValue(f"{where}.timeoutSeconds must be a positive whole number of seconds")
    return Resources(
        millicpu=_cpu(given["cpu"], f"{where}.cpu") if "cpu" in given else None,
        memory_bytes=_memory(given["memory"], f"{where}.memory") if "memory" in given else None,
        timeout_ms=timeout * 1000 if timeout is not None else None,
        security_level=level,
        allow_env=allow_env,
    )


def _security(context: Any) -> tuple[str, tuple[str, ...]]:
    """The security level and the allowed environment variables' names, checked."""
    if context is None:
        return "LOW", ()
    where = "executionConfig.securityContext"
    if not isinstance(context, dict):
        raise InvalidValue(f"{where} must be an object")
    level = context.get("securityLevel", "LOW")
    if level not in SECURITY_LEVELS:
        raise InvalidValue(f"{where}.securityLevel must be one of {', '.join(SECURITY_LEVELS)}")
    return level, _allow_env(context.get("allowEnv", []), f"{where}.allowEnv")


def _allow_env(names: Any, where: str) -> tuple[str, ...]:
    if not isinstance(names, list):
        raise InvalidValue(f"{where} must be a list of environment variable names")
    for name in names:
        if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
            raise InvalidValue(f"{where}: {str(name)[:40]!r} is not an environment variable name")
        if name.upper().startswith("TASKEXEC_"):
            raise InvalidValue(f"{where}: {name} is the worker's own setting, never a task's")
    return tuple(dict.fromkeys(names))


def _quantity(text: Any, where: str, form: str) -> tuple[Decimal, str]:
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise InvalidValue(f"{where} must be a quantity: {form}")
    found = _QUANTITY.fullmatch(str(text).strip())
    if found is None:
        raise InvalidValue(f"{where} {str(text)[:40]!r} is not a quantity: {form}")
    try:
        number = Decimal(found.group(1))
    except InvalidOperation:  # pragma: no cover - the pattern admits only decimals
        raise InvalidValue(f"{where} {text!r} is not a quantity: {form}") from None
    return number, found.group(2) or ""


def parse_memory(text: Any, where: str) -> int:
    """A memory quantity in bytes (also a worker's ``--memory``); InvalidValue naming
    ``where`` if it is not one."""
    return _memory(text, where)


def parse_cpu(text: Any, where: str) -> int:
    """A cpu quantity in millicores (also a worker's ``--cpus``); InvalidValue naming
    ``where`` if it is not one."""
    return _cpu(text, where)


def _memory(text: Any, where: str) -> int:
    form = "bytes, e.g. 134217728, 128Mi, 1Gi, 500M, 129e6"
    number, suffix = _quantity(text, where, form)
    if suffix in _BINARY:
        value = number * (1 << _BINARY[suffix])
    elif suffix in _DECIMAL:
        value = number.scaleb(_DECIMAL[suffix])
    elif suffix[:1] in ("e", "E"):
        value = number.scaleb(int(suffix[1:]))
    elif suffix == "":
        value = number
    else:  # "m" (thousandths of a byte): Kubernetes takes it, nobody means it
        raise InvalidValue(f"{where} {text!r} is not a quantity: {form}")
    if value < 1 or value > 1 << 62:
        raise InvalidValue(f"{where} must be from 1 byte to 4 EiB")
    return int(value.to_integral_value(rounding="ROUND_CEILING"))


def _cpu(text: Any, where: str) -> int:
    form = "cores or millicores, e.g. 1, 0.5, 250m"
    number, suffix = _quantity(text, where, form)
    if suffix == "m":
        millis = number
    elif suffix == "":
        millis = number * 1000
    else:
        raise InvalidValue(f"{where} {text!r} is not a quantity: {form}")
    if millis < 1 or millis != millis.to_integral_value() or millis > 1_000_000_000:
        raise InvalidValue(f"{where} must be a whole number of millicores, at least 1m")
    return int(millis)
