"""Settings: every ``TASKEXEC_*`` variable is read here, once, and nowhere else (and
whether to trace, from the ``OTEL_*`` ones: api/settings_otel.py).

``VARIABLES`` lists them with the field each sets and its form (api/settings_forms.py).
A bad value is a ValueError of one line naming the variable and the form it takes
(``taskexec`` prints it and exits with status 2). Blank means unset: the default.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from api.settings_forms import (
    DB_POOL_SIZE_VARIABLE,
    LOG_LEVELS,
    MAX_NATS_REPLICAS,
    MIN_DB_POOL_SIZE,
    NATS_REPLICAS_VARIABLE,
    NATS_SCHEMES,
    NATS_URL_VARIABLE,
    as_path,
    as_text,
    check_max_age,
    check_max_bytes,
    check_positive_seconds,
    parse_claim_name,
    parse_database_url,
    parse_db_pool_size,
    parse_duration,
    parse_jwks_location,
    parse_jwt_secret,
    parse_log_format,
    parse_log_level,
    parse_nats_servers,
    parse_port,
    parse_rate_limit,
    parse_replicas,
    parse_seconds,
    parse_size,
    parse_switch,
)
from api.settings_otel import check_tracing, parse_tracing
from api.settings_worker import (
    check_executors,
    check_positive_int,
    parse_executors,
    parse_worker_cpus,
    parse_worker_memory,
)
from commands.fast_paths import FastPaths

__all__ = [  # the forms other modules take from here, as before the split
    "DB_POOL_SIZE_VARIABLE",
    "DEFAULT_DATABASE_URL",
    "LOG_LEVELS",
    "MAX_NATS_REPLICAS",
    "MIN_DB_POOL_SIZE",
    "NATS_REPLICAS_VARIABLE",
    "NATS_SCHEMES",
    "NATS_URL_VARIABLE",
    "VARIABLES",
    "Settings",
    "Variable",
    "parse_db_pool_size",
    "parse_duration",
    "parse_nats_servers",
    "parse_replicas",
    "parse_size",
]

DEFAULT_DATABASE_URL = "sqlite:///./var/taskexec.db"


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
    # The JWT claim that names a principal's tenant (docs/security.md, "Tenants"); None: none.
    jwt_tenant_claim: str | None = None
    rate_limit: str = "100/minute"
    rate_limit_bulk: str = "20/minute"
    # Unacked work is redelivered after this long (a worker that died mid-attempt).
    work_ack_wait_s: float = 30.0
    # TASK_EVENTS retention (Limits): the oldest events go first; 0 / -1: no limit.
    events_max_age_s: float = 30 * 24 * 3600.0
    events_max_bytes: int = -1
    # PostgreSQL connections one serve holds at most (shared out in commands/budget.py).
    db_pool_size: int = 8
    log_level: str = "INFO"
    # Lines as ``text`` or ``json`` (workers/logs.py); one line per HTTP request or none.
    log_format: str = "text"
    access_log: bool = True
    # The shortcuts below libraries' public APIs (commands/fast_paths.py): on = fast.
    fast_nats_wire: bool = True
    fast_pg_insert: bool = True
    fast_task_cache: bool = True
    fast_recent_events: bool = True
    fast_gc_pause: bool = True
    # Prometheus metrics (api/metrics/, workers/metrics.py): off for a cost comparison.
    metrics: bool = True
    # A worker's /metrics and /health/ready port (``--metrics-port``); None: no server.
    worker_metrics_port: int | None = None
    # The executor pools a worker takes work of (``--executors`` wins); None: the default
    # pool for ``worker``, every pool its definitions name for ``dev``'s worker.
    worker_executors: tuple[str, ...] | None = None
    # What a worker offers to the requests of the attempts it runs (``--cpus``,
    # ``--memory``: workers/capacity.py), in millicores and bytes; None: not limited.
    worker_cpus: int | None = None
    worker_memory: int | None = None
    # Trace exporters (workers/tracing.py), from the OTEL_* variables (api/settings_otel.py);
    # empty: tracing off.
    tracing: tuple[str, ...] = ()
    # How long the API trusts a looked-up API key (a revocation takes effect within it).
    # Not an environment variable: a short, fixed bound is part of the security contract.
    apikey_cache_seconds: float = 5.0

    def __post_init__(self) -> None:
        """Settings made in code are held to the same forms: a bad one fails at start-up,
        not at its first use."""
        for variable in VARIABLES:
            value = getattr(self, variable.field)
            if value is not None and variable.check is not None:
                variable.check(variable.name, value)
        check_tracing("tracing", self.tracing)

    @property
    def nats_servers(self) -> tuple[str, ...]:
        """The servers of TASKEXEC_NATS_URL, in order; empty when it is unset."""
        return parse_nats_servers(self.nats_url) if self.nats_url is not None else ()

    @property
    def dev_api_key_file(self) -> Path:
        """Where ``taskexec dev`` keeps its development API key (mode 0600)."""
        return self.var_dir / "dev-api-key"

    @property
    def fast_paths(self) -> FastPaths:
        """The shortcuts to take, for TaskService, the publisher and the GC pauses."""
        return FastPaths(
            nats_wire=self.fast_nats_wire,
            pg_insert=self.fast_pg_insert,
            task_cache=self.fast_task_cache,
            recent_events=self.fast_recent_events,
            gc_pause=self.fast_gc_pause,
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Every variable of VARIABLES that is set (blank: unset), parsed once."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for variable in VARIABLES:
            text = env.get(variable.name, "").strip()
            if text:
                values[variable.field] = variable.parse(variable.name, text)
        values["tracing"] = parse_tracing(env)  # the OTEL_* variables' own rules
        return cls(**values)

    @property
    def nats_store_dir(self) -> Path:
        return self.var_dir / "nats"

    @property
    def nats_url_file(self) -> Path:
        """Where a process with an embedded nats-server leaves its URL for local workers."""
        return self.nats_store_dir / "url"


@dataclass(frozen=True)
class Variable:
    """A ``TASKEXEC_*`` variable: the Settings field it sets, how its text is parsed, and
    how a value made in code is checked (None: any value of the field's type)."""

    name: str
    field: str
    parse: Callable[[str, str], Any]
    check: Callable[[str, Any], object] | None = None


VARIABLES: tuple[Variable, ...] = (
    Variable("TASKEXEC_DATABASE_URL", "database_url", parse_database_url, parse_database_url),
    Variable(
        NATS_URL_VARIABLE, "nats_url", as_text, lambda name, text: parse_nats_servers(text, name)
    ),
    Variable(
        NATS_REPLICAS_VARIABLE,
        "nats_replicas",
        lambda name, text: parse_replicas(text, name),
        lambda name, value: parse_replicas(str(value), name),
    ),
    Variable("TASKEXEC_DEFINITIONS_DIR", "definitions_dir", as_path),
    Variable("TASKEXEC_VAR_DIR", "var_dir", as_path),
    Variable("TASKEXEC_JWT_JWKS", "jwt_jwks", parse_jwks_location, parse_jwks_location),
    Variable("TASKEXEC_JWT_SECRET", "jwt_secret", parse_jwt_secret, parse_jwt_secret),
    Variable("TASKEXEC_JWT_ISSUER", "jwt_issuer", as_text),
    Variable("TASKEXEC_JWT_AUDIENCE", "jwt_audience", as_text),
    Variable("TASKEXEC_JWT_TENANT_CLAIM", "jwt_tenant_claim", parse_claim_name, parse_claim_name),
    Variable("TASKEXEC_RATE_LIMIT", "rate_limit", parse_rate_limit, parse_rate_limit),
    Variable("TASKEXEC_RATE_LIMIT_BULK", "rate_limit_bulk", parse_rate_limit, parse_rate_limit),
    Variable(
        "TASKEXEC_WORK_ACK_WAIT_SECONDS", "work_ack_wait_s", parse_seconds, check_positive_seconds
    ),
    Variable("TASKEXEC_EVENTS_MAX_AGE", "events_max_age_s", parse_duration, check_max_age),
    Variable("TASKEXEC_EVENTS_MAX_BYTES", "events_max_bytes", parse_size, check_max_bytes),
    Variable(
        DB_POOL_SIZE_VARIABLE,
        "db_pool_size",
        lambda name, text: parse_db_pool_size(text, name),
        lambda name, value: parse_db_pool_size(str(value), name),
    ),
    Variable("TASKEXEC_LOG_LEVEL", "log_level", parse_log_level, parse_log_level),
    Variable("TASKEXEC_LOG_FORMAT", "log_format", parse_log_format, parse_log_format),
    Variable("TASKEXEC_ACCESS_LOG", "access_log", parse_switch),
    Variable("TASKEXEC_FAST_NATS_WIRE", "fast_nats_wire", parse_switch),
    Variable("TASKEXEC_FAST_PG_INSERT", "fast_pg_insert", parse_switch),
    Variable("TASKEXEC_FAST_TASK_CACHE", "fast_task_cache", parse_switch),
    Variable("TASKEXEC_FAST_RECENT_EVENTS", "fast_recent_events", parse_switch),
    Variable("TASKEXEC_FAST_GC_PAUSE", "fast_gc_pause", parse_switch),
    Variable("TASKEXEC_METRICS", "metrics", parse_switch),
    Variable("TASKEXEC_WORKER_METRICS_PORT", "worker_metrics_port", parse_port, parse_port),
    Variable("TASKEXEC_WORKER_EXECUTORS", "worker_executors", parse_executors, check_executors),
    Variable("TASKEXEC_WORKER_CPUS", "worker_cpus", parse_worker_cpus, check_positive_int),
    Variable("TASKEXEC_WORKER_MEMORY", "worker_memory", parse_worker_memory, check_positive_int),
)
