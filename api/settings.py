"""Settings: read from the environment here and nowhere else."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DATABASE_URL = "sqlite:///./var/taskexec.db"


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
        )

    @property
    def nats_store_dir(self) -> Path:
        return self.var_dir / "nats"

    @property
    def nats_url_file(self) -> Path:
        """Where a process with an embedded nats-server leaves its URL for local workers."""
        return self.nats_store_dir / "url"
