"""The INTEGRATION executor: POST the task input as JSON to the definition's endpoint."""

from __future__ import annotations

from typing import Any

import httpx

from workers import tracing


class IntegrationError(Exception):
    """The endpoint answered with an error or could not be reached."""

    def __init__(self, message: str, retryable: bool, error_type: str) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.error_type = error_type  # CONNECTION_ERROR, HTTP_<status>, INVALID_RESPONSE


class IntegrationExecutor:
    """One shared HTTP client for all INTEGRATION attempts of a worker."""

    def __init__(self) -> None:
        self._client = httpx.AsyncClient(follow_redirects=False)

    async def call(self, endpoint: str, payload: Any, timeout_s: float) -> Any:
        """The endpoint's JSON answer to ``payload``; with tracing on, the call is a client
        span under the attempt's and sends its context (``traceparent``, ``tracestate``)."""
        if not tracing.active():
            return await self._call(endpoint, payload, timeout_s, None)
        attributes = {"http.request.method": "POST", "url.full": endpoint}
        with tracing.span("POST", "client", None, attributes) as span:
            try:
                return await self._call(endpoint, payload, timeout_s, tracing.current())
            except IntegrationError as exc:
                tracing.failed(span, exc.error_type)
                raise

    async def _call(
        self, endpoint: str, payload: Any, timeout_s: float, headers: dict[str, str] | None
    ) -> Any:
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
        retryable = response.status_code >= 500 or response.status_code == 429
        raise IntegrationError(
            f"POST {endpoint} answered {response.status_code}: {response.text[:200]}",
            retryable=retryable,
            error_type=f"HTTP_{response.status_code}",
        )

    async def close(self) -> None:
        await self._client.aclose()
