"""``OPTIONS`` on every API path, answering ``Allow`` with every method the path serves.

Litestar makes its own ``OPTIONS`` handler when a path's first handler is registered and
does not update it when a second handler joins the path later (``GET`` and ``POST
/api/v1/tasks`` come from two handlers): its ``Allow`` then lists only the first one's
methods. A path with an explicit ``OPTIONS`` handler gets none of Litestar's, so each
path gets one of these, built from the full list of handlers.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from litestar import Response
from litestar.enums import HttpMethod
from litestar.handlers import HTTPRouteHandler
from litestar.status_codes import HTTP_204_NO_CONTENT


def allowed_methods(handlers: Iterable[HTTPRouteHandler]) -> dict[str, frozenset[str]]:
    """Each path of ``handlers`` with the methods served there, ``OPTIONS`` included."""
    methods: dict[str, set[str]] = defaultdict(lambda: {HttpMethod.OPTIONS.value})
    for handler in handlers:
        for path in handler.paths:
            methods[path] |= {str(method) for method in handler.http_methods}
    return {path: frozenset(found) for path, found in methods.items()}


def options_handlers(handlers: Iterable[HTTPRouteHandler]) -> list[HTTPRouteHandler]:
    """One ``OPTIONS`` handler per path of ``handlers``: 204 with the whole ``Allow``."""
    return [_options(path, methods) for path, methods in allowed_methods(handlers).items()]


def _options(path: str, methods: frozenset[str]) -> HTTPRouteHandler:
    allow = ", ".join(sorted(methods))

    def options() -> Response[None]:
        return Response(content=None, status_code=HTTP_204_NO_CONTENT, headers={"Allow": allow})

    return HTTPRouteHandler(
        path=path,
        http_method=[HttpMethod.OPTIONS],
        include_in_schema=False,
        sync_to_thread=False,
        name=f"options:{path}",
    )(options)
