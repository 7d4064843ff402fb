"""The gate: the outermost ASGI layer, in front of Litestar's router.

For every HTTP request but the probes (``/health``, ``/health/live``, ``/health/ready``:
never counted nor authenticated, they are for load balancers and orchestrators), before
any routing, body parsing or database read:

0. if authenticating would need a lookup (an API key not in the cache) and the client
   address's budget is known to be used up: 429 ``RATE_LIMITED`` at once, not counted,
   so floods of made-up keys cost no event-store read once over budget;
1. authenticate the credential, if one was sent (api/security/auth.py);
2. count the request against the caller's budget: the principal (JWT ``sub`` or API key
   id) when authenticated, else the client address (api/security/ratelimit.py); the bulk endpoint
   has its own budget;
3. over budget: 429 ``RATE_LIMITED`` with ``Retry-After``;
4. not authenticated and not an open path (the probes, ``/schema…``): 401
   ``UNAUTHORIZED`` with ``WWW-Authenticate``;
5. else the request goes on, with ``scope["user"]`` set to the Principal (each route's
   permission is checked before its body is read, api/security/guards.py).

It sits outside the router so that its headers reach every response, router-level 404 and
405 included: it adds ``X-RateLimit-Limit``, ``-Remaining`` and ``-Reset`` to whatever
leaves. Errors it writes itself use the spec's envelope.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import msgspec
from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPScope, Message, Receive, Scope, Send

from api.availability import is_database_error
from api.security.auth import Authenticator, credentials_from
from api.security.principal import AuthFailure, Principal, WouldBlock
from api.security.ratelimit import Decision, RateLimits

log = logging.getLogger(__name__)

REALM = "taskexec"
BULK_PATH = "/api/v1/tasks/bulk"
HEALTH_PATH = "/health"  # open, and not counted: load balancers probe it
HEALTH_PATHS = frozenset({HEALTH_PATH, "/health/live", "/health/ready"})  # the probes
_encoder = msgspec.json.Encoder()


def normalised(path: str) -> str:
    """The path as the router matches it: repeated slashes collapsed, no trailing one.
    (``/api/v1//tasks/bulk`` reaches the bulk handler, so it must count as bulk too.)"""
    return re.sub(r"/+", "/", path).rstrip("/") or "/"


def is_open(path: str) -> bool:
    """Paths anyone may call: the probes and the API documentation."""
    path = normalised(path)
    return path in HEALTH_PATHS or path == "/schema" or path.startswith("/schema/")


def is_counted(path: str) -> bool:
    """Every path counts against a budget but the probes."""
    return normalised(path) not in HEALTH_PATHS


def bucket_of(method: str, path: str) -> str:
    return "bulk" if method == "POST" and normalised(path) == BULK_PATH else "default"


@dataclass(frozen=True)
class Security:
    """What the gate needs; built by the Runtime when it opens."""

    authenticator: Authenticator
    limits: RateLimits


class _AddressExhausted(Exception):
    """Authentication would need a lookup, and the client address has no budget left."""

    def __init__(self, decision: Decision) -> None:
        super().__init__()
        self.decision = decision


class Gate:
    """Wraps an ASGI app (Litestar's router and exception handling)."""

    def __init__(self, app: ASGIApp, security: Callable[[], Security]) -> None:
        self._app = app
        self._security = security

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self._app(scope, receive, send)
            return
        await self._gate(scope, receive, send)

    async def _gate(self, scope: HTTPScope, receive: Receive, send: Send) -> None:
        if not is_counted(scope["path"]):  # the probes: open, no credential needed
            await self._app(scope, receive, send)
            return
        security = self._security()
        bucket = bucket_of(scope["method"], scope["path"])
        address = f"addr:{_client(scope)}"
        principal: Principal | None = None
        failure: AuthFailure | None = None
        unavailable = False
        try:
            principal = await self._authenticate(security, scope, bucket, address)
        except _AddressExhausted as exc:
            await _send_rate_limited(send, exc.decision, exc.decision.headers())
            return
        except AuthFailure as exc:
            failure = exc
        except Exception as exc:  # e.g. the event store is unreachable for an API-key load
            if is_database_error(exc):  # the monitor logs the outage, once
                log.debug("authentication unavailable: %s", exc)
            else:
                log.exception("authentication failed unexpectedly")
            unavailable = True

        caller = principal.rate_key if principal is not None else address
        decision = await _count(security.limits, bucket, caller)
        headers = decision.headers() if decision is not None else []

        if decision is not None and not decision.allowed:
            await _send_rate_limited(send, decision, headers)
            return
        if unavailable:  # nothing was done: the request may be sent again in a second
            await _send_error(
                send,
                503,
                "SERVICE_UNAVAILABLE",
                "authentication is unavailable (the credential could not be looked up)",
                [*headers, (b"retry-after", b"1")],
                {"recorded": False, "retryAfter": 1},
            )
            return
        if principal is None and not is_open(scope["path"]):
            await _send_unauthorized(send, failure, headers)
            return
        if principal is not None:
            scope["user"] = principal
            scope["auth"] = principal.kind
        await self._app(scope, receive, _with_headers(send, headers) if headers else send)

    async def _authenticate(
        self, security: Security, scope: HTTPScope, bucket: str, address: str
    ) -> Principal | None:
        credentials = credentials_from(scope["headers"])
        if credentials is None:
            return None
        authenticator = security.authenticator
        try:
            return authenticator.authenticate(credentials, blocking=False)
        except WouldBlock:
            # An API key to load: a store read the address pays for from its own budget.
            # (A JWKS refetch is bounded for the whole process already, api/security/jwks.py.)
            if credentials.scheme == "ApiKey":
                exhausted = security.limits.exhausted(bucket, address)
                if exhausted is not None:
                    raise _AddressExhausted(exhausted) from None
            return await anyio.to_thread.run_sync(_blocking, authenticator, credentials)


async def _count(limits: RateLimits, bucket: str, caller: str) -> Decision | None:
    try:
        return await limits.hit(bucket, caller)
    except Exception:  # a limiter must never take the API down
        log.exception("rate limiter failed; request not counted")
        return None


def _blocking(authenticator: Authenticator, credentials: Any) -> Principal:
    return authenticator.authenticate(credentials, blocking=True)


def _client(scope: HTTPScope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def _with_headers(send: Send, headers: list[tuple[bytes, bytes]]) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            present = {name.lower() for name, _ in message.get("headers", [])}
            extra = [(name, value) for name, value in headers if name not in present]
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return sending


async def _send_rate_limited(
    send: Send, decision: Decision, headers: list[tuple[bytes, bytes]]
) -> None:
    await _send_error(
        send,
        429,
        "RATE_LIMITED",
        f"rate limit exceeded ({decision.rate}); retry after {decision.retry_after} s",
        [*headers, (b"retry-after", str(decision.retry_after).encode())],
        {"limit": decision.rate.limit, "period": decision.rate.period, "reset": decision.reset},
    )


async def _send_unauthorized(
    send: Send, failure: AuthFailure | None, headers: list[tuple[bytes, bytes]]
) -> None:
    bearer = f'Bearer realm="{REALM}"'
    api_key = f'ApiKey realm="{REALM}", header="X-API-Key"'
    if failure is None:
        message = "authentication required: send a Bearer token or an X-API-Key"
    else:
        message = failure.message
        # A quoted-string in a header: visible ASCII, no quotes or backslashes.
        description = "".join(
            c if " " <= c <= "~" and c not in '"\\' else "'" for c in failure.message
        )
        if failure.scheme == "Bearer":
            bearer += f', error="{failure.error}", error_description="{description}"'
        else:
            api_key += f', error="{failure.error}", error_description="{description}"'
    challenges = [(b"www-authenticate", bearer.encode()), (b"www-authenticate", api_key.encode())]
    await _send_error(send, 401, "UNAUTHORIZED", message, [*headers, *challenges])


async def _send_error(
    send: Send,
    status: int,
    code: str,
    message: str,
    headers: list[tuple[bytes, bytes]],
    details: Any = None,
) -> None:
    body = _encoder.encode({"error": {"code": code, "message": message, "details": details}})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})
