"""Settings: read from the environment here and nowhere else."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

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


@dataclass(frozen=True)
class Settings:
    """Everything a process is configured with (same variable names in every process)."""

    database_url: str = DEFAULT_DATABASE_URL
    nats_url: str | None = None
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
    # How long the API trusts a looked-up API key (a revocation takes effect within it).
    # Not an environment variable: a short, fixed bound is part of the security contract.
    apikey_cache_seconds: float = 5.0

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
            nats_url=get("TASKEXEC_NATS_URL"),
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
        )

    @property
    def nats_store_dir(self) -> Path:
        return self.var_dir / "nats"

    @property
    def nats_url_file(self) -> Path:
        """Where a process with an embedded nats-server leaves its URL for local workers."""
        return self.nats_store_dir / "url"
