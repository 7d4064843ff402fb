"""The credentials of an INTEGRATION call (``executionConfig.auth``, domain/integration_auth.py):
the headers that authenticate it, from the worker's environment, read at call time.

- OAuth2 client credentials: Authlib's ``AsyncOAuth2Client`` fetches the token; one client
  per (tokenUrl, clientId, scope) for the worker's life, so its token is reused by every
  call until it is within ``TOKEN_LEEWAY_S`` of its ``expires_in``, and then fetched anew
  (``ensure_active_token``). A token without ``expires_in`` is kept until the endpoint
  answers 401 (``forget``). The secret is read from its variable at every call, so a
  rotated secret is used at the next fetch.
- Static headers: each value read from its variable at every call.

Failures are the attempt's (workers/integration.py ``IntegrationError``):
``AUTH_CONFIG_ERROR`` (not retryable: the worker's configuration must change: a variable
unset or empty, or holding what a header cannot carry; an auth document that does not
parse) and ``AUTH_ERROR`` (retryable: the token endpoint refused, could not be reached or
answered no token). No message names a secret or a token, only variables and URLs.
"""

from __future__ import annotations

import asyncio
import os
import warnings

import authlib.deprecate
import httpx

from domain.errors import InvalidValue
from domain.integration_auth import ClientCredentials, EnvHeaders, parse_auth

with warnings.catch_warnings():
    # Authlib 1.9.10 prefers the httpx2 package and warns (its filter says "always") when
    # it falls back to httpx, which is this project's: the same client, and a line of
    # noise in every worker's log. Ours is set after Authlib's, so it comes first.
    warnings.filterwarnings(
        "ignore", "The httpx module is deprecated", authlib.deprecate.AuthlibDeprecationWarning
    )
    from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError

AUTH_CONFIG_ERROR = "AUTH_CONFIG_ERROR"
AUTH_ERROR = "AUTH_ERROR"
TOKEN_LEEWAY_S = 60  # a token is fetched again this long before it expires
TOKEN_TIMEOUT_S = 10.0  # per token request (the attempt's own timeout bounds it too)


class AuthFailure(Exception):
    """Credentials could not be had; ``error_type`` AUTH_CONFIG_ERROR or AUTH_ERROR."""

    def __init__(self, message: str, error_type: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.retryable = error_type == AUTH_ERROR


class _TokenSource:
    """One OAuth2 client (client-credentials grant) and the token it holds."""

    def __init__(self, config: ClientCredentials, secret: str) -> None:
        self.config = config
        self.client = AsyncOAuth2Client(
            client_id=config.client_id,
            client_secret=secret,
            token_endpoint_auth_method="client_secret_basic",
            scope=config.scope,
            token_endpoint=config.token_url,
            grant_type="client_credentials",
            leeway=TOKEN_LEEWAY_S,
            timeout=TOKEN_TIMEOUT_S,
            follow_redirects=False,
        )
        self._lock = asyncio.Lock()  # concurrent calls wait for one fetch, not one each

    async def access_token(self, secret: str) -> str:
        """A live access token: the one held, or a new one when there is none or it is
        about to expire."""
        client = self.client
        client.client_secret = secret
        try:
            async with self._lock:
                if not client.token:
                    await client.fetch_token()
                else:  # fetched again within the leeway of its expiry
                    await client.ensure_active_token(client.token)
            token = client.token or {}
            kind = str(token.get("token_type", "Bearer"))
            value = token.get("access_token")
        except (OAuthError, httpx.HTTPError, ValueError, KeyError) as exc:
            raise AuthFailure(
                f"token request to {self.config.token_url} failed: {_reason(exc)}", AUTH_ERROR
            ) from None  # the chain could repeat what the token endpoint was sent
        if kind.lower() != "bearer" or not isinstance(value, str) or not _header_safe(value):
            client.token = None
            raise AuthFailure(
                f"{self.config.token_url} answered no usable bearer token", AUTH_ERROR
            )
        return value


class Credentials:
    """The worker's credentials for INTEGRATION calls: the OAuth2 clients, kept for its
    life (``close`` closes them)."""

    def __init__(self) -> None:
        self._sources: dict[tuple[str, str, str | None], _TokenSource] = {}

    async def headers(self, auth: object) -> dict[str, str]:
        """The headers that authenticate a call under ``auth`` (a work item's copy of
        ``executionConfig.auth``); AuthFailure if they cannot be had."""
        try:
            config = parse_auth(auth)
        except InvalidValue as exc:
            raise AuthFailure(str(exc), AUTH_CONFIG_ERROR) from None
        if isinstance(config, EnvHeaders):
            return {
                name: _variable(env, f"executionConfig.auth.headers.{name}.fromEnv")
                for name, env in config.headers
            }
        secret = _variable(config.client_secret_env, "executionConfig.auth.clientSecretEnv")
        key = (config.token_url, config.client_id, config.scope)
        source = self._sources.get(key)
        if source is None:
            source = self._sources[key] = _TokenSource(config, secret)
        return {"Authorization": f"Bearer {await source.access_token(secret)}"}

    def forget(self, auth: object) -> None:
        """The endpoint refused the token (401): the next call fetches another (a token
        revoked early, or one without ``expires_in``)."""
        try:
            config = parse_auth(auth)
        except InvalidValue:
            return
        if isinstance(config, ClientCredentials):
            source = self._sources.get((config.token_url, config.client_id, config.scope))
            if source is not None:
                source.client.token = None

    async def close(self) -> None:
        for source in self._sources.values():
            await source.client.aclose()
        self._sources.clear()


def _variable(name: str, field: str) -> str:
    """The value of the worker's environment variable ``name`` (``field`` names it)."""
    value = os.environ.get(name, "")
    if not value:
        raise AuthFailure(
            f"{field}: the worker's environment variable {name} is unset or empty",
            AUTH_CONFIG_ERROR,
        )
    if not _header_safe(value):
        raise AuthFailure(
            f"{field}: the worker's environment variable {name} holds characters an HTTP "
            "header cannot carry",
            AUTH_CONFIG_ERROR,
        )
    return value


def _header_safe(value: str) -> bool:
    """Visible ASCII and inner spaces only: what any header value may be (no line breaks
    that could smuggle a header in, nothing httpx would refuse, naming the value)."""
    return value == value.strip() and all(32 <= ord(c) < 127 for c in value)


def _reason(exc: Exception) -> str:
    """What went wrong with a token request, without anything it carried."""
    if isinstance(exc, OAuthError):
        return f"{exc.error}: {exc.description}" if exc.description else str(exc.error)
    if isinstance(exc, httpx.HTTPStatusError):
        return f"answered {exc.response.status_code}"
    if isinstance(exc, httpx.HTTPError):
        return f"{type(exc).__name__}: {exc}"
    return str(exc)[:200]
