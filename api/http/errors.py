"""Every error leaves in the spec's envelope: ``{"error": {"code", "message", "details"}}``.

Codes beyond the spec's table: ``METHOD_NOT_ALLOWED`` (405), ``RATE_LIMITED`` (429),
``PAYLOAD_TOO_LARGE`` (413), ``SERVICE_UNAVAILABLE`` (503). Documented in docs/api.md.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from eventsourcing.persistence import PersistenceError
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import ResponseSpec
from litestar.status_codes import (
    HTTP_400_BAD_REQUEST,
    HTTP_401_UNAUTHORIZED,
    HTTP_403_FORBIDDEN,
    HTTP_404_NOT_FOUND,
    HTTP_405_METHOD_NOT_ALLOWED,
    HTTP_409_CONFLICT,
    HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    HTTP_422_UNPROCESSABLE_ENTITY,
    HTTP_429_TOO_MANY_REQUESTS,
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_503_SERVICE_UNAVAILABLE,
)

from api.availability import ServiceUnavailable, is_database_error, unknown_outcome
from api.http.schemas import ErrorEnvelope
from commands.errors import CommandError, Conflict, NotFound, TooLarge, ValidationFailed

log = logging.getLogger(__name__)

ERROR = ResponseSpec(data_container=ErrorEnvelope, description="An error in the spec's envelope")

CODES = {
    HTTP_400_BAD_REQUEST: "VALIDATION_ERROR",
    HTTP_401_UNAUTHORIZED: "UNAUTHORIZED",
    HTTP_403_FORBIDDEN: "FORBIDDEN",
    HTTP_404_NOT_FOUND: "NOT_FOUND",
    HTTP_405_METHOD_NOT_ALLOWED: "METHOD_NOT_ALLOWED",
    HTTP_409_CONFLICT: "CONFLICT",
    HTTP_413_REQUEST_ENTITY_TOO_LARGE: "PAYLOAD_TOO_LARGE",
    HTTP_422_UNPROCESSABLE_ENTITY: "VALIDATION_ERROR",
    HTTP_429_TOO_MANY_REQUESTS: "RATE_LIMITED",
    HTTP_503_SERVICE_UNAVAILABLE: "SERVICE_UNAVAILABLE",
}
COMMAND_STATUS = {
    NotFound: HTTP_404_NOT_FOUND,
    ValidationFailed: HTTP_422_UNPROCESSABLE_ENTITY,
    Conflict: HTTP_409_CONFLICT,
    TooLarge: HTTP_413_REQUEST_ENTITY_TOO_LARGE,
}


def envelope(
    status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> Response[Any]:
    return Response(
        {"error": {"code": code, "message": message, "details": details}},
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


def command_error(_: Request[Any, Any, Any], exc: CommandError) -> Response[Any]:
    status = COMMAND_STATUS.get(type(exc), HTTP_500_INTERNAL_SERVER_ERROR)
    return envelope(status, exc.code, exc.message, exc.details)


def validation_error(_: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    """400 with ``details`` as for every error: an object. ``field``/``issue``/``source``
    name the first problem; ``violations`` lists every one the framework found."""
    violations = [
        {"field": item.get("key"), "issue": item.get("message"), "source": item.get("source")}
        if isinstance(item, dict)
        else {"field": None, "issue": str(item), "source": None}
        for item in (exc.extra if isinstance(exc.extra, list) else [])
    ]
    message = exc.detail or "Invalid request"
    details: dict[str, Any] | None = None
    if violations:
        details = {**violations[0], "violations": violations}
        if violations[0]["field"]:
            message = f"{message}: {violations[0]['field']}: {violations[0]['issue']}"
    return envelope(HTTP_400_BAD_REQUEST, "VALIDATION_ERROR", message, details)


def http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    code = CODES.get(status, "INTERNAL_ERROR" if status >= 500 else "VALIDATION_ERROR")
    headers = dict(exc.headers or {})
    details = exc.extra or None
    if details is not None and not isinstance(details, dict):  # one shape: an object
        details = {"violations": list(details) if isinstance(details, list) else [details]}
    return envelope(status, code, exc.detail, details, headers or None)


def unavailable(request: Request[Any, Any, Any], exc: ServiceUnavailable) -> Response[Any]:
    """503 with Retry-After, saying whether the request was recorded (api/availability.py)."""
    # DEBUG: while the database is away every request ends here; the monitor logs the
    # outage itself, once (commands/db_monitor.py).
    log.debug("%s %s: 503: %s", request.method, request.url.path, exc.message)
    headers = {"Retry-After": str(exc.retry_after)}
    return envelope(
        HTTP_503_SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE", exc.message, exc.details, headers
    )


def database_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """The database could not be reached or used (outside the command facade: a read, a
    manual completion): 503. A read changed nothing; a write may have been recorded."""
    if not is_database_error(exc):
        return internal_error(request, exc)
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if request.method in ("GET", "HEAD"):
        return unavailable(request, ServiceUnavailable(f"the database is unreachable ({reason})"))
    return unavailable(request, unknown_outcome(reason))


def too_deep(request: Request[Any, Any, Any], exc: RecursionError) -> Response[Any]:
    """A body nested deeper than the decoder goes (msgspec says "while deserializing"): the
    client's error, 400. Any other RecursionError is ours: 500."""
    if "deserializ" not in str(exc):
        return internal_error(request, exc)
    return envelope(
        HTTP_400_BAD_REQUEST, "VALIDATION_ERROR", "Invalid request: the JSON body nests too deeply"
    )


def internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return envelope(HTTP_500_INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", "Internal server error")


EXCEPTION_HANDLERS: dict[Any, Any] = {
    CommandError: command_error,
    ServiceUnavailable: unavailable,
    psycopg.OperationalError: database_error,
    psycopg.InterfaceError: database_error,
    PersistenceError: database_error,
    ValidationException: validation_error,
    HTTPException: http_error,
    RecursionError: too_deep,
    HTTP_500_INTERNAL_SERVER_ERROR: internal_error,
    Exception: internal_error,
}
