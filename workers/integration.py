"""The INTEGRATION executor: POST the task input as JSON to the definition's endpoint,
with ``Idempotency-Key: <taskId>:<attempt>`` (a redelivered attempt carries the same key,
so the endpoint can recognise it) and the credentials of ``executionConfig.auth``
(workers/integration_auth.py)."""

from __future__ import annotations

from typing import Any

import httpx

from workers import tracing
from workers.integration_auth import AuthFailure, Credentials


class IntegrationError(Exception):
    """The endpoint answered with an error or could not be reached, or the call's
    credentials could not be had."""

    def __init__(self, message: str, retryable: bool, error_type: str) -> None:
        super().__init__(message)
        self.retryable = retryable
        # CONNECTION_ERROR, HTTP_<status>, INVALID_RESPONSE, AUTH_ERROR, AUTH_CONFIG_ERROR
        self.error_type = error_type


class IntegrationExecutor:
    """One shared HTTP client for all INTEGRATION attempts of a worker, and the
    credentials (OAuth2 clients with their tokens) they share."""

    def __init__(self) -> None:
        self._client = httpx.AsyncClient(follow_redirects=False)
        self._credentials = Credentials()

    async def call(
        self,
        endpoint: str,
        payload: Any,
        timeout_s: float,
        idempotency_key: str,
        auth: dict[str, Any] | None = None,
    ) -> Any:
        """The endpoint's JSON answer to ``payload``, the call authenticated per ``auth``
        (``executionConfig.auth``; None: no credentials); with tracing on, the call is a
        client span under the attempt's and sends its context (``traceparent``,
        ``tracestate``)."""
        headers = {"Idempotency-Key": idempotency_key}
        if not tracing.active():
            return await self._call(endpoint, payload, timeout_s, headers, auth)
        attributes = {"http.request.method": "POST", "url.full": endpoint}
        with tracing.span("POST", "client", None, attributes) as span:
            headers.update(tracing.current() or {})
            try:
                return await self._call(endpoint, payload, timeout_s, headers, auth)
            except IntegrationError as exc:
                tracing.failed(span, exc.error_type)
                raise

    async def _call(
        self,
        endpoint: str,
        payload: Any,
        timeout_s: float,
        headers: dict[str, str],
        auth: dict[str, Any] | None,
    ) -> Any:
        if auth is not None:
            try:
                headers.update(await self._credentials.headers(auth))
            except AuthFailure as exc:
                raise IntegrationError(str(exc), exc.retryable, exc.error_type) from None
        try:
            response = await self._client.post(
                endpoint, json=payload, timeout=timeout_s, headers=headers
            )
        except httpx.HTTPError as exc:
            raise IntegrationError(
                f"POST {endpoint} failed: {exc!r}", retryable=True, error_type="CONNECTION_ERROR"
            ) from exc
        if response.is_success:
            try:
                return response.json()
            except ValueError as exc:
                raise IntegrationError(
                    f"POST {endpoint} answered {response.status_code} without JSON",
                    retryable=False,
                    error_type="INVALID_RESPONSE",
                ) from exc
        if response.status_code == 401 and auth is not None:
            self._credentials.forget(auth)  # the next call fetches a new token
        retryable = response.status_code >= 500 or response.status_code == 429
        raise IntegrationError(
            f"POST {endpoint} answered {response.status_code}: {response.text[:200]}",
            retryable=retryable,
            error_type=f"HTTP_{response.status_code}",
        )

    async def close(self) -> None:
        await self._client.aclose()
        await self._credentials.close()
