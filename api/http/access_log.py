"""The access log and the request id: the outermost ASGI layer of ``serve``.

Every HTTP request gets a request id: the client's ``X-Request-ID`` when it is sane (1 to
128 characters of ``A-Z a-z 0-9 . _ : + / = -``), else a new one (32 hex digits). It is
sent back in the ``X-Request-ID`` response header and bound to the log context
(workers/logs.py) while the request is served, so that every line logged on its behalf
carries it.

With the access log on (``TASKEXEC_ACCESS_LOG``, default on), one INFO line per request
on the logger ``taskexec.access``, once the response is sent: ``method``, ``route`` (the
path template the router matched; ``-`` when the request got no route, e.g. a 401 or
429 of the gate, a 404), ``path`` (without the query string: that is never logged),
``status``, ``duration_ms``, ``principal`` and ``principal_kind`` (who the gate
authenticated, ``-`` when nobody), ``client`` (the peer address). Never a header but the
request id, never a body. It wraps the gate, so the gate's own answers are logged too.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from random import getrandbits

from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPScope, Message, Receive, Scope, Send

from workers.logs import bind, unbind

ACCESS_LOGGER = "taskexec.access"
HEADER = b"x-request-id"
_SANE = re.compile(rb"[A-Za-z0-9._:+/=-]{1,128}")
log = logging.getLogger(ACCESS_LOGGER)


def request_id(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The client's X-Request-ID if it is sane, else a new id (not a secret: random
    enough to tell requests apart)."""
    for name, value in headers:
        if name == HEADER:
            if _SANE.fullmatch(value):
                return value.decode()
            break
    return f"{getrandbits(128):032x}"


class AccessLog:
    """Wraps an ASGI app: request id in and out, one access line per request."""

    def __init__(self, app: ASGIApp, enabled: bool = True) -> None:
        self._app = app
        self._enabled = enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self._app(scope, receive, send)
            return
        await self._served(scope, receive, send)

    async def _served(self, scope: HTTPScope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        rid = request_id(scope["headers"])
        echoed = (HEADER, rid.encode())
        status = 500  # unless a response starts

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), echoed]}
            await send(message)

        token = bind(request_id=rid)
        try:
            await self._app(scope, receive, sending)
        finally:
            if self._enabled and log.isEnabledFor(logging.INFO):
                _line(scope, status, (time.perf_counter() - started) * 1000)
            unbind(token)


def _line(scope: HTTPScope, status: int, ms: float) -> None:
    principal = scope.get("user")  # set by the gate (api/security/gate.py)
    who = getattr(principal, "id", None) or "-"
    kind = getattr(principal, "kind", None) or "-"
    client = scope.get("client")
    method, path = scope["method"], scope["path"]
    if not path.isprintable():  # decoded %0A and the like: one line stays one line
        path = ascii(path)[1:-1]
    log.info(
        "%s %s %d %.1fms %s",
        method,
        path,
        status,
        ms,
        f"{kind}:{who}" if principal is not None else "-",
        extra={
            "method": method,
            "route": scope.get("path_template") or "-",
            "path": path,
            "status": status,
            "duration_ms": round(ms, 3),
            "principal": who,
            "principal_kind": kind,
            "client": client[0] if client else "-",
        },
    )
