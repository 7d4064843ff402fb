"""The server span of each HTTP request, with tracing on: the outermost ASGI layer.

An incoming W3C ``traceparent`` (and ``tracestate``) makes it a child of the caller's
span; without one, it begins a new trace. It is named after the route template (``POST
/api/v1/tasks``, never a raw path), carries the HTTP semantic-convention attributes, ends
in error on a 5xx, and is current while the request is served: a submit stores its
context with the task (api/tracing.py) and every log line of the request carries its
``trace_id`` (workers/logs.py). Installed only when tracing is on (api/http/app.py).
"""

from __future__ import annotations

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from workers import tracing
from workers.logs import bind, unbind

_CONTEXT_HEADERS = {b"traceparent": "traceparent", b"tracestate": "tracestate"}


class TracedRequests:
    """Wraps an ASGI app: one server span per HTTP request."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self._app(scope, receive, send)
            return
        carrier = {
            _CONTEXT_HEADERS[name]: value.decode("latin-1")
            for name, value in scope["headers"]
            if name in _CONTEXT_HEADERS
        }
        method = scope["method"]
        status = 500  # unless a response starts
        attributes = {"http.request.method": method, "url.path": scope["path"]}

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with tracing.span(method, "server", carrier or {}, attributes) as span:
            token = bind(trace_id=format(span.get_span_context().trace_id, "032x"))
            try:
                await self._app(scope, receive, sending)
            finally:
                unbind(token)
                route = scope.get("path_template")
                if route:
                    span.update_name(f"{method} {route}")
                    span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    tracing.failed(span, f"HTTP {status}")
