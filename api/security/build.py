"""Builds authentication and rate limiting from Settings (called by the Runtime)."""

from __future__ import annotations

import logging

from api.security.auth import ApiKeyCache, Authenticator
from api.security.gate import Security
from api.security.jwks import JwksSource
from api.security.ratelimit import Limiter, MemoryLimiter, PostgresLimiter, Rate, RateLimits
from api.security.tokens import TokenVerifier
from api.settings import Settings
from commands.apikeys import ApiKeyService
from commands.persistence import DatabaseConfig

log = logging.getLogger(__name__)


def parse_rates(settings: Settings) -> tuple[Rate | None, Rate | None]:
    """The default and bulk rates; ValueError names a bad setting."""
    try:
        default = Rate.parse(settings.rate_limit)
    except ValueError as exc:
        raise ValueError(f"TASKEXEC_RATE_LIMIT: {exc}") from None
    try:
        bulk = Rate.parse(settings.rate_limit_bulk)
    except ValueError as exc:
        raise ValueError(f"TASKEXEC_RATE_LIMIT_BULK: {exc}") from None
    return default, bulk


def build_security(
    settings: Settings, db: DatabaseConfig, apikeys: ApiKeyService, db_connections: int = 4
) -> Security:
    """Blocking: fetches the JWKS (if one is configured). ``db_connections``: the shared
    rate-limit counters' pool on PostgreSQL (its share of the budget, commands/budget.py)."""
    default, bulk = parse_rates(settings)
    jwks = None
    if settings.jwt_jwks is not None:
        jwks = JwksSource(settings.jwt_jwks)
        jwks.start()
    tokens = TokenVerifier(
        secret=settings.jwt_secret,
        jwks=jwks,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        tenant_claim=settings.jwt_tenant_claim,
    )
    if tokens.enabled and (settings.jwt_issuer is None or settings.jwt_audience is None):
        log.warning(
            "JWTs are accepted without an issuer or audience check: "
            "set TASKEXEC_JWT_ISSUER and TASKEXEC_JWT_AUDIENCE"
        )
    limiter: Limiter = (
        PostgresLimiter(db.conninfo(), pool_size=max(1, db_connections))
        if db.is_postgres and (default is not None or bulk is not None)
        else MemoryLimiter()
    )
    return Security(
        authenticator=Authenticator(
            tokens, ApiKeyCache(apikeys.get, ttl=settings.apikey_cache_seconds)
        ),
        limits=RateLimits(limiter, default=default, bulk=bulk),
    )
