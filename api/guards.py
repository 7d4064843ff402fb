"""Per-route permissions: each endpoint declares the one permission it needs.

    @get(path, **protected(Permission.TASKS_READ), responses={..., **AUTH_ERRORS})

``protected`` adds a Litestar guard (403 ``FORBIDDEN`` without the permission; guards run
before the body is parsed and before the handler reads anything, so a 403 never tells
whether a task exists), the OpenAPI security requirement, and ``opt["permission"]`` for
introspection (a test checks that every route but the open ones declares one).
Authentication itself happens earlier, in the gate (api/gate.py).
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import SecurityScheme
from litestar.types import Guard

from api.gate import REALM
from api.principal import Principal
from api.schemas import ErrorEnvelope
from domain.permissions import Permission

SECURITY_SCHEMES: dict[str, Any] = {
    "bearerAuth": SecurityScheme(
        type="http",
        scheme="bearer",
        bearer_format="JWT",
        description="A JWT from the auth service (permissions in `permissions` or `scope`).",
    ),
    "apiKeyAuth": SecurityScheme(
        type="apiKey",
        name="X-API-Key",
        security_scheme_in="header",
        description="A service account's key (`taskexec apikey create`).",
    ),
}
SECURITY_REQUIREMENT: list[dict[str, list[str]]] = [{"bearerAuth": []}, {"apiKeyAuth": []}]
AUTH_ERRORS = {
    401: ResponseSpec(
        data_container=ErrorEnvelope, description="UNAUTHORIZED: no or invalid credentials"
    ),
    403: ResponseSpec(data_container=ErrorEnvelope, description="FORBIDDEN: missing permission"),
    429: ResponseSpec(
        data_container=ErrorEnvelope, description="RATE_LIMITED: retry after Retry-After seconds"
    ),
}


def require(permission: Permission) -> Guard:
    """A guard that lets through only principals holding ``permission``.

    Async on purpose: Litestar runs a sync guard in the thread pool, a thread hop per
    request for a set lookup."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        principal = connection.scope.get("user")
        if not isinstance(principal, Principal):  # the gate lets no one through unauthenticated
            raise NotAuthorizedException(
                "authentication required", headers={"WWW-Authenticate": f'Bearer realm="{REALM}"'}
            )
        if permission.value not in principal.permissions:
            raise PermissionDeniedException(
                f"permission {permission.value} is required", extra={"required": permission.value}
            )

    return guard


def protected(permission: Permission) -> dict[str, Any]:
    """Route decorator arguments for an endpoint that needs ``permission``."""
    return {
        "guards": [require(permission)],
        "security": SECURITY_REQUIREMENT,
        "opt": {"permission": permission.value},
    }


def current_principal(request: Request[Any, Any, Any]) -> Principal:
    """The ``principal`` dependency: the caller the gate authenticated."""
    principal = request.scope.get("user")
    if not isinstance(principal, Principal):
        raise NotAuthorizedException("authentication required")
    return principal
