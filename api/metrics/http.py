"""The HTTP side of the metrics: the layer that counts and times every request, and
``GET /metrics`` (the Prometheus text format; permission ``metrics:read``).

``RequestMetrics`` wraps the gate (api/http/app.py), so that what the gate answers
itself (401, 429) is counted too. Its ``route`` label is the template Litestar's router
matched (``scope["path_template"]``); a request the gate answered before routing is
given its route's template by a (cached) look-up in the router, and a path no route
serves is ``unmatched``: never a raw path, whatever clients send.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from litestar import Response, get
from litestar.di import NamedDependency
from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPScope, Message, Receive, Scope, Send
from litestar.utils import normalize_path

from api.metrics.families import ServeMetrics
from api.metrics.scrape import scrape
from api.runtime import Runtime
from api.security.guards import protected
from domain.permissions import Permission

UNMATCHED = "unmatched"
# The classic text format, which every Prometheus reads (Litestar adds the charset).
MEDIA_TYPE = "text/plain; version=0.0.4"
Routing = Callable[..., tuple[Any, ...]]  # Litestar's ASGIRouter.handle_routing


class RequestMetrics:
    """An ASGI layer: ``taskexec_http_requests_total`` and ``_duration_seconds``."""

    def __init__(self, app: ASGIApp, metrics: ServeMetrics, routing: Routing) -> None:
        self._app = app
        self._metrics = metrics
        self._routing = routing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self._app(scope, receive, send)
            return
        await self._measured(scope, receive, send)

    async def _measured(self, scope: HTTPScope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 500  # unless an answer starts

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, sending)
        finally:
            route = scope.get("path_template") or self._route(scope)
            self._metrics.request(scope["method"], route, status, time.perf_counter() - started)

    def _route(self, scope: HTTPScope) -> str:
        """The template of the route the request was for (it did not get that far)."""
        try:
            template = self._routing(path=normalize_path(scope["path"]), method=scope["method"])[4]
        except Exception:  # no such route, or not that method
            return UNMATCHED
        return str(template)


@get(
    "/metrics",
    summary="Prometheus metrics",
    include_in_schema=False,  # text, for Prometheus: docs/operations.md, "Metrics"
    **protected(Permission.METRICS_READ),
)
async def metrics(runtime: NamedDependency[Runtime]) -> Response[bytes]:
    parts = runtime.parts
    assert parts.metrics is not None  # the route exists only when metrics are on
    bridge = runtime.bridge
    body = await scrape(parts, parts.metrics.registry, bridge.nc if bridge else None)
    return Response(body, media_type=MEDIA_TYPE)
