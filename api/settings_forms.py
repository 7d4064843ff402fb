"""The forms ``TASKEXEC_*`` variables take (api/settings.py reads them): each parser
turns a variable's text into its value, or raises a ValueError of one line naming the
variable and the form; the ``check_*`` functions hold a value made in code to it."""

from __future__ import annotations

import math
import re
from ipaddress import ip_address
from pathlib import Path
from urllib.parse import urlsplit

from api.security.rates import Rate
from commands.persistence import DatabaseConfig
from workers.logs import LOG_FORMATS

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZE = re.compile(r"(\d+)\s*(b|kb|mb|gb|tb|kib|mib|gib|tib)?")
_BYTES = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def parse_duration(name: str, text: str) -> float:
    """Seconds from ``90``, ``90s``, ``15m``, ``12h``, ``30d``, ``2w``; ``0`` or
    ``unlimited``: no limit (0). Anything else is a ValueError naming ``name``."""
    text = text.strip().lower()
    if text in ("unlimited", "none", "off"):
        return 0.0
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(f"{name}={text!r}: use seconds or 90s, 15m, 12h, 30d, 2w, or unlimited")
    return float(match.group(1)) * _SECONDS[match.group(2) or "s"]


def parse_size(name: str, text: str) -> int:
    """Bytes from ``1048576``, ``500MB``, ``10GB``, ``1GiB``, …; ``-1`` or ``unlimited``:
    no limit (-1). Anything else is a ValueError naming ``name``."""
    text = text.strip().lower()
    if text in ("unlimited", "none", "off", "-1"):
        return -1
    match = _SIZE.fullmatch(text)
    if match is None or int(match.group(1)) == 0:
        raise ValueError(
            f"{name}={text!r}: use a positive number of bytes (500MB, 10GB, 1GiB) or unlimited"
        )
    return int(match.group(1)) * _BYTES[match.group(2) or "b"]


NATS_URL_VARIABLE = "TASKEXEC_NATS_URL"
NATS_REPLICAS_VARIABLE = "TASKEXEC_NATS_REPLICAS"
NATS_SCHEMES = ("nats", "tls", "ws", "wss")
MAX_NATS_REPLICAS = 5  # JetStream's own limit for a stream's replicas


def parse_nats_servers(text: str, name: str = NATS_URL_VARIABLE) -> tuple[str, ...]:
    """The servers of a NATS URL setting: the NATS convention is a comma-separated
    list, while nats-py's ``connect(servers=...)`` wants a list. Empty items and URLs
    without a ``nats://``, ``tls://``, ``ws://`` or ``wss://`` scheme and a host are a
    ValueError naming ``name`` (credentials in the URL are not echoed)."""
    items = [item.strip() for item in text.split(",")]
    if not any(items):
        raise ValueError(f"{name} is empty: give nats://host:port, or several separated by ','")
    for position, item in enumerate(items, start=1):
        if not item:
            raise ValueError(f"{name}: server {position} of {len(items)} is empty (stray ',')")
        _check_nats_url(name, item)
    return tuple(items)


def _check_nats_url(name: str, url: str) -> None:
    shown = re.sub(r"//[^/@]*@", "//***@", url)  # user:password@ stays out of the message
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- a port that is not a number raises here
    except ValueError:
        raise ValueError(f"{name}: {shown!r} is not a URL") from None
    if parts.scheme.lower() not in NATS_SCHEMES or not parts.hostname:
        schemes = ", ".join(f"{scheme}://" for scheme in NATS_SCHEMES)
        raise ValueError(f"{name}: {shown!r} needs a scheme ({schemes}) and a host")


def parse_replicas(text: str, name: str = NATS_REPLICAS_VARIABLE) -> int:
    """Replicas of every stream and KV bucket: an integer from 1 to 5, else a
    ValueError naming ``name``."""
    try:
        replicas = int(text.strip())
    except ValueError:
        replicas = 0
    if not 1 <= replicas <= MAX_NATS_REPLICAS:
        raise ValueError(f"{name}={text!r}: use an integer from 1 to {MAX_NATS_REPLICAS}")
    return replicas


DB_POOL_SIZE_VARIABLE = "TASKEXEC_DB_POOL_SIZE"
MIN_DB_POOL_SIZE = 5  # commands/budget.py: the fixed connections and one per pool


def parse_db_pool_size(text: str, name: str = DB_POOL_SIZE_VARIABLE) -> int:
    """PostgreSQL connections one ``serve`` may hold: an integer of at least 5, else a
    ValueError naming ``name``."""
    try:
        size = int(text.strip())
    except ValueError:
        size = 0
    if size < MIN_DB_POOL_SIZE:
        raise ValueError(f"{name}={text!r}: use an integer of at least {MIN_DB_POOL_SIZE}")
    return size


def parse_seconds(name: str, text: str) -> float:
    """A positive number of seconds: ``30``, ``2.5``, or ``30s``, ``5m``, ``1h``; anything
    else (``0``, ``-5``, ``unlimited``) is a ValueError naming ``name``."""
    match = _DURATION.fullmatch(text.strip().lower())
    seconds = float(match.group(1)) * _SECONDS[match.group(2) or "s"] if match else 0.0
    _check(name, text, seconds > 0 and math.isfinite(seconds), _POSITIVE_SECONDS)
    return seconds


_POSITIVE_SECONDS = "use a positive number of seconds (30, 2.5) or 30s, 5m, 1h"
_SWITCH = {"on": True, "true": True, "yes": True, "1": True}
_SWITCH |= {"off": False, "false": False, "no": False, "0": False}


def parse_switch(name: str, text: str) -> bool:
    """``on``/``off`` (also true/false, yes/no, 1/0), else a ValueError naming ``name``."""
    value = _SWITCH.get(text.strip().lower())
    _check(name, text, value is not None, "use on or off")
    return bool(value)


def parse_port(name: str, text: str) -> int:
    """A TCP port, 1 to 65535; else a ValueError naming ``name``."""
    port = int(text) if str(text).strip().isdigit() else 0
    _check(name, text, 1 <= port <= 65535, "use a port number from 1 to 65535")
    return port


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def parse_log_level(name: str, text: str) -> str:
    """One of LOG_LEVELS (any case), upper-cased; else a ValueError naming ``name``."""
    level = text.strip().upper()
    _check(name, text, level in LOG_LEVELS, f"use one of {', '.join(LOG_LEVELS)}")
    return level


def parse_log_format(name: str, text: str) -> str:
    """``text`` or ``json`` (any case), lower-cased; else a ValueError naming ``name``."""
    log_format = text.strip().lower()
    _check(name, text, log_format in LOG_FORMATS, "use text or json")
    return log_format


def parse_rate_limit(name: str, text: str) -> str:
    """``N/second|minute|hour|day`` (N >= 1) or ``off``, as given (``Rate.parse`` is the
    rule, api/security/rates.py); else a ValueError naming ``name``."""
    try:
        Rate.parse(text)
    except ValueError:
        _check(name, text, False, "use N/second, N/minute, N/hour or N/day (N >= 1), or off")
    return text


JWT_SECRET_MIN_BYTES = 32


def parse_jwt_secret(name: str, text: str) -> str:
    """An HS256 secret of at least 32 bytes (never echoed in the message)."""
    if len(text.encode("utf-8")) < JWT_SECRET_MIN_BYTES:
        raise ValueError(f"{name} must be at least {JWT_SECRET_MIN_BYTES} bytes long")
    return text


# Claims that already mean something else here (times, permissions): never a tenant.
_NOT_TENANT_CLAIMS = frozenset({"exp", "nbf", "iat", "permissions", "scope"})


def parse_claim_name(name: str, text: str) -> str:
    """The name of a JWT claim (TASKEXEC_JWT_TENANT_CLAIM): 1 to 100 visible ASCII
    characters, not one of the claims this service reads for something else."""
    if not re.fullmatch(r"[\x21-\x7e]{1,100}", text) or text in _NOT_TENANT_CLAIMS:
        raise ValueError(
            f"{name}={text!r}: give a claim's name (1 to 100 visible ASCII characters), "
            f"not one of {', '.join(sorted(_NOT_TENANT_CLAIMS))}"
        )
    return text


def jwks_location_ok(location: str) -> bool:
    """A file path, an https URL, or an http URL on loopback (a local development IdP):
    the one rule, also applied by api/security/jwks.py."""
    if "://" not in location:
        return True
    try:
        parts = urlsplit(location)
        host = parts.hostname or ""
    except ValueError:  # an unbalanced [ in the host
        return False
    if not host:
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and _loopback(host))


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ip_address(host).is_loopback
    except ValueError:
        return False


def parse_jwks_location(name: str, text: str) -> str:
    form = "use a file path or an https URL (http only on loopback)"
    _check(name, text, jwks_location_ok(text), form)
    return text


def parse_database_url(name: str, text: str) -> str:
    """A URL DatabaseConfig takes (sqlite:/// or postgresql://), as given; a password in
    it is not echoed."""
    try:
        DatabaseConfig.from_url(text)
    except ValueError as exc:
        message = str(exc)
        try:
            password = urlsplit(text).password
        except ValueError:
            password = None
        if password:
            message = message.replace(password, "***")
        if "sqlite:///" not in message and "postgresql://" not in message:
            message += " (use sqlite:///path/file.db or postgresql://user:pass@host:port/db)"
        raise ValueError(f"{name}: {message}") from None
    return text


def _check(name: str, text: object, good: bool, form: str) -> None:
    if not good:
        raise ValueError(f"{name}={text!r}: {form}")


def as_text(name: str, text: str) -> str:
    return text


def as_path(name: str, text: str) -> Path:
    return Path(text)


def check_max_age(name: str, value: float) -> None:
    _check(name, value, value >= 0 and math.isfinite(value), "use 0 (no limit) or more seconds")


def check_positive_seconds(name: str, value: float) -> None:
    _check(name, value, value > 0 and math.isfinite(value), _POSITIVE_SECONDS)


def check_max_bytes(name: str, value: int) -> None:
    _check(name, value, value == -1 or value > 0, "use -1 (no limit) or a positive size")
