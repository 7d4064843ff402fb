"""``executionConfig.auth`` of an INTEGRATION definition: how the worker authenticates its
call, read from a definition that holds no secret, only the names of the worker's
environment variables that do.

Two kinds (docs/definitions.md, executionConfig):
- ``{"type": "oauth2-client-credentials", "tokenUrl", "clientId", "clientSecretEnv",
  "scope"?}``: a bearer token of the client-credentials grant;
- ``{"type": "headers", "headers": {"<Header-Name>": {"fromEnv": "<VARIABLE>"}}}``:
  static headers, each value read from a variable.

``parse_auth`` is the one reading of the document: the catalog checks a definition with
it when the definition is loaded, and the worker reads a work item's copy with it (so a
work item that somehow carries a bad one fails its attempt instead of calling without
credentials). Standard library only: the worker process imports it (docs/architecture.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from domain.errors import InvalidValue

FIELD = "executionConfig.auth"
OAUTH2_CLIENT_CREDENTIALS = "oauth2-client-credentials"
HEADERS = "headers"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # an RFC 9110 token
# Headers the worker sets itself (or that httpx derives from the body): never from config.
RESERVED_HEADERS = frozenset(
    {
        "idempotency-key",
        "content-type",
        "content-length",
        "transfer-encoding",
        "connection",
        "host",
        "traceparent",
        "tracestate",
    }
)
# Keys that would put a secret into the definition: named in the error, which says where
# the secret belongs instead.
_SECRET_KEYS = frozenset({"clientSecret", "secret", "password", "token", "value"})


@dataclass(frozen=True)
class ClientCredentials:
    """OAuth2 client credentials: a token from ``token_url`` for ``client_id`` (and
    ``scope``), the secret in the worker's variable ``client_secret_env``."""

    token_url: str
    client_id: str
    client_secret_env: str
    scope: str | None = None


@dataclass(frozen=True)
class EnvHeaders:
    """Static headers: (header name, the worker's variable holding its value), in order."""

    headers: tuple[tuple[str, str], ...]


IntegrationAuth = ClientCredentials | EnvHeaders


def parse_auth(doc: Any) -> IntegrationAuth:
    """The auth config of ``doc``; InvalidValue naming the field (``executionConfig.auth.
    tokenUrl``, say) if it is not one of the two kinds, has a field too many or too few,
    or carries a secret itself."""
    if not isinstance(doc, dict):
        raise InvalidValue(f"{FIELD} must be an object")
    kind = doc.get("type")
    if kind == OAUTH2_CLIENT_CREDENTIALS:
        _known_fields(doc, {"type", "tokenUrl", "clientId", "clientSecretEnv", "scope"})
        scope = doc.get("scope")
        if scope is not None and (not isinstance(scope, str) or not scope.strip()):
            raise InvalidValue(f"{FIELD}.scope must be a non-empty string (space-separated)")
        return ClientCredentials(
            token_url=_token_url(doc.get("tokenUrl")),
            client_id=_text(doc, "clientId"),
            client_secret_env=_env_name(doc.get("clientSecretEnv"), f"{FIELD}.clientSecretEnv"),
            scope=scope,
        )
    if kind == HEADERS:
        _known_fields(doc, {"type", "headers"})
        return EnvHeaders(_env_headers(doc.get("headers")))
    raise InvalidValue(f"{FIELD}.type must be {OAUTH2_CLIENT_CREDENTIALS} or {HEADERS}")


def _known_fields(doc: dict[str, Any], known: set[str]) -> None:
    for key in sorted(set(doc) - known, key=str):
        if key in _SECRET_KEYS:
            raise InvalidValue(
                f"{FIELD}.{key}: never a secret in the definition; name the worker's "
                "environment variable that holds it (clientSecretEnv, fromEnv)"
            )
        raise InvalidValue(f"{FIELD}.{key} is not a field of {doc['type']} auth")


def _token_url(value: Any) -> str:
    field = f"{FIELD}.tokenUrl"
    if not isinstance(value, str):
        raise InvalidValue(f"{field} must be an http or https URL")
    try:
        parts = urlsplit(value)
        user = parts.username
    except ValueError:
        raise InvalidValue(f"{field} must be an http or https URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidValue(f"{field} must be an http or https URL")
    if user is not None:
        raise InvalidValue(f"{field} must not carry credentials; use clientSecretEnv")
    return value


def _text(doc: dict[str, Any], key: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InvalidValue(f"{FIELD}.{key} must be a non-empty string")
    return value


def _env_name(value: Any, field: str) -> str:
    if not isinstance(value, str) or not _ENV_NAME.fullmatch(value):
        raise InvalidValue(f"{field} must name an environment variable ([A-Za-z_][A-Za-z0-9_]*)")
    return value


def _env_headers(value: Any) -> tuple[tuple[str, str], ...]:
    field = f"{FIELD}.headers"
    if not isinstance(value, dict) or not value:
        raise InvalidValue(f"{field} must be a non-empty object of header names")
    seen: set[str] = set()
    headers = []
    for name, source in value.items():
        where = f"{field}.{name}"
        if not _HEADER_NAME.fullmatch(name):
            raise InvalidValue(f"{where}: not a valid header name")
        if name.lower() in RESERVED_HEADERS:
            raise InvalidValue(f"{where}: the worker sets this header itself")
        if name.lower() in seen:
            raise InvalidValue(f"{where}: the header is named twice (names ignore case)")
        seen.add(name.lower())
        if not isinstance(source, dict) or set(source) != {"fromEnv"}:
            raise InvalidValue(
                f'{where} must be {{"fromEnv": "<VARIABLE>"}}: never a secret in the '
                "definition, only the name of the worker's environment variable holding it"
            )
        headers.append((name, _env_name(source["fromEnv"], f"{where}.fromEnv")))
    return tuple(headers)
