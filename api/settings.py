"""Settings: read from the environment here and nowhere else."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_DATABASE_URL = "sqlite:///./var/taskexec.db"
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


@dataclass(frozen=True)
class Settings:
    """Everything a process is configured with (same variable names in every process)."""

    database_url: str = DEFAULT_DATABASE_URL
    # As given (one URL or several, comma-separated): passed on as is to the processes
    # ``dev`` spawns; ``nats_servers`` is the parsed list, for ``nats.connect``.
    nats_url: str | None = None
    # Replicas of every stream and KV bucket the service creates (a cluster's size or less).
    nats_replicas: int = 1
    definitions_dir: Path | None = None
    var_dir: Path = Path("var")
    jwt_jwks: str | None = None
    jwt_secret: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    rate_limit: str = "100/minute"
    rate_limit_bulk: str = "20/minute"
    # Unacked work is redelivered after this long (a worker that died mid-attempt).
    work_ack_wait_s: float = 30.0
    # TASK_EVENTS retention (Limits): the oldest events go first; 0 / -1: no limit.
    events_max_age_s: float = 30 * 24 * 3600.0
    events_max_bytes: int = -1
    # PostgreSQL connections one serve holds at most (shared out in commands/budget.py).
    db_pool_size: int = 8
    # How long the API trusts a looked-up API key (a revocation takes effect within it).
    # Not an environment variable: a short, fixed bound is part of the security contract.
    apikey_cache_seconds: float = 5.0

    def __post_init__(self) -> None:
        # A bad NATS setting fails at start-up, not at the first connect.
        if self.nats_url is not None:
            parse_nats_servers(self.nats_url)
        parse_replicas(str(self.nats_replicas))
        parse_db_pool_size(str(self.db_pool_size))

    @property
    def nats_servers(self) -> tuple[str, ...]:
        """The servers of TASKEXEC_NATS_URL, in order; empty when it is unset."""
        return parse_nats_servers(self.nats_url) if self.nats_url is not None else ()

    @property
    def dev_api_key_file(self) -> Path:
        """Where ``taskexec dev`` keeps its development API key (mode 0600)."""
        return self.var_dir / "dev-api-key"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        definitions = get("TASKEXEC_DEFINITIONS_DIR")
        return cls(
            database_url=get("TASKEXEC_DATABASE_URL") or DEFAULT_DATABASE_URL,
            nats_url=get(NATS_URL_VARIABLE),  # empty: unset (an embedded server)
            nats_replicas=parse_replicas(get(NATS_REPLICAS_VARIABLE) or "1"),
            definitions_dir=Path(definitions) if definitions else None,
            var_dir=Path(get("TASKEXEC_VAR_DIR") or "var"),
            jwt_jwks=get("TASKEXEC_JWT_JWKS"),
            jwt_secret=get("TASKEXEC_JWT_SECRET"),
            jwt_issuer=get("TASKEXEC_JWT_ISSUER"),
            jwt_audience=get("TASKEXEC_JWT_AUDIENCE"),
            rate_limit=get("TASKEXEC_RATE_LIMIT") or "100/minute",
            rate_limit_bulk=get("TASKEXEC_RATE_LIMIT_BULK") or "20/minute",
            work_ack_wait_s=float(get("TASKEXEC_WORK_ACK_WAIT_SECONDS") or 30.0),
            events_max_age_s=parse_duration(
                "TASKEXEC_EVENTS_MAX_AGE", get("TASKEXEC_EVENTS_MAX_AGE") or "30d"
            ),
            events_max_bytes=parse_size(
                "TASKEXEC_EVENTS_MAX_BYTES", get("TASKEXEC_EVENTS_MAX_BYTES") or "unlimited"
            ),
            db_pool_size=parse_db_pool_size(get(DB_POOL_SIZE_VARIABLE) or "8"),
        )

    @property
    def nats_store_dir(self) -> Path:
        return self.var_dir / "nats"

    @property
    def nats_url_file(self) -> Path:
        """Where a process with an embedded nats-server leaves its URL for local workers."""
        return self.nats_store_dir / "url"
