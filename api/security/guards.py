"""Per-route permissions: each endpoint declares the one permission it needs.

    @get(path, **protected(Permission.TASKS_READ), responses={..., **AUTH_ERRORS})

``protected`` puts the permission in ``opt["permission"]``, which the app's before-request
hook ``check_permission`` enforces (403 ``FORBIDDEN`` without it; it runs before the body
is parsed and before the handler reads anything, so a 403 never tells whether a task
exists), and adds the OpenAPI security requirement (a test checks that every route but
the open ones declares a permission).
Authentication itself happens earlier, in the gate (api/security/gate.py).
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import SecurityScheme

from api.http.schemas import ErrorEnvelope
from api.security.gate import REALM
from api.security.principal import Principal
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


async def check_permission(request: Request[Any, Any, Any]) -> None:
    """The app's ``before_request`` hook: a route that declares a permission
    (``opt["permission"]``, set by ``protected``) lets through only principals holding it.

    It runs where guards run, before the body is parsed and the handler reads anything.
    Not a guard: Litestar copies the route handler object for every guard call (2.5% of
    ``serve``'s CPU under load, bench profile), and this check needs nothing of it."""
    permission = request.route_handler.opt.get("permission")
    if permission is None:  # open routes: /health, the docs
        return
    principal = request.scope.get("user")
    if not isinstance(principal, Principal):  # the gate lets no one through unauthenticated
        raise NotAuthorizedException(
            "authentication required", headers={"WWW-Authenticate": f'Bearer realm="{REALM}"'}
        )
    if permission not in principal.permissions:
        raise PermissionDeniedException(
            f"permission {permission} is required", extra={"required": permission}
        )


def protected(permission: Permission) -> dict[str, Any]:
    """Route decorator arguments for an endpoint that needs ``permission``: checked by
    ``check_permission`` (the app's before-request hook), declared in the OpenAPI spec."""
    return {
        "security": SECURITY_REQUIREMENT,
        "opt": {"permission": permission.value},
    }


def current_principal(request: Request[Any, Any, Any]) -> Principal:
    """The ``principal`` dependency: the caller the gate authenticated."""
    principal = request.scope.get("user")
    if not isinstance(principal, Principal):
        raise NotAuthorizedException("authentication required")
    return principal
