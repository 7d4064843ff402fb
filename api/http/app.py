"""The Litestar application: the routes of each resource, the probes (``/health``,
``/health/live``, ``/health/ready``), the dependencies, the error handlers, the gate in
front (api/security/gate.py) and, with metrics on, ``/metrics`` and the request metrics
around the gate (api/metrics/http.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio.to_thread
from litestar import Litestar, Response, get
from litestar.di import NamedDependency, Provide
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.spec import Components
from litestar.status_codes import HTTP_503_SERVICE_UNAVAILABLE

from api.http.access_log import AccessLog
from api.http.definitions import ROUTES as DEFINITION_ROUTES
from api.http.docs_pages import docs_assets_router, docs_plugins
from api.http.errors import EXCEPTION_HANDLERS
from api.http.history import ROUTES as AUDIT_ROUTES
from api.http.manual import ROUTES as MANUAL_ROUTES
from api.http.openapi_contract import Completed, completer, operation_id
from api.http.options import options_handlers
from api.http.schemas import Health, Live
from api.http.tasks import ROUTES as TASK_ROUTES
from api.http.tracing import TracedRequests
from api.metrics.http import RequestMetrics
from api.metrics.http import metrics as metrics_route
from api.runtime import Runtime
from api.security.gate import Gate
from api.security.guards import (
    SECURITY_SCHEMES,
    check_permission,
    current_principal,
)
from workers import tracing

log = logging.getLogger(__name__)


NOT_READY = {503: ResponseSpec(Health, description="Not ready: a check failed")}


async def _readiness(runtime: Runtime) -> Response[Health]:
    checks = await anyio.to_thread.run_sync(runtime.health)
    ok = all(checks.values())
    return Response(
        Health(status="ok" if ok else "unavailable", checks=checks),
        status_code=200 if ok else HTTP_503_SERVICE_UNAVAILABLE,
    )


@get("/health", summary="Readiness", include_in_schema=True, responses=NOT_READY)
async def health(runtime: NamedDependency[Runtime]) -> Response[Health]:
    return await _readiness(runtime)


@get("/health/ready", summary="Readiness (as /health)", include_in_schema=True, responses=NOT_READY)
async def health_ready(runtime: NamedDependency[Runtime]) -> Response[Health]:
    return await _readiness(runtime)


@get("/health/live", summary="Liveness: the process answers", include_in_schema=True)
async def health_live() -> Live:
    return Live(status="ok")


API_ROUTES = [
    *TASK_ROUTES,
    *DEFINITION_ROUTES,
    *MANUAL_ROUTES,
    *AUDIT_ROUTES,
    health,
    health_live,
    health_ready,
]


def create_app(
    runtime: Runtime, nats_url: str | None, on_started: Callable[[], None] = lambda: None
) -> Litestar:
    """The app over an open runtime (``Runtime.open``); its lifespan starts messaging
    when there is a NATS URL, calls ``on_started`` (``serve`` settles the heap there:
    commands/gc_pause.py) and closes the runtime at the end."""

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        await runtime.start_security()
        if nats_url:
            await runtime.start_messaging(nats_url)
        on_started()
        try:
            yield
        finally:
            await runtime.stop_messaging()
            await runtime.stop_security()
            await asyncio.to_thread(runtime.close)

    finish = completer(API_ROUTES)  # the served document, exact (api/http/openapi_contract.py)
    metrics = runtime.parts.metrics  # None: TASKEXEC_METRICS=off, no /metrics
    app = Litestar(
        # OPTIONS first: a path whose first handler answers OPTIONS gets no stale one.
        route_handlers=[
            *options_handlers(API_ROUTES),
            *API_ROUTES,
            docs_assets_router(),
            *([metrics_route] if metrics is not None else []),
        ],
        dependencies={
            "runtime": Provide(lambda: runtime, use_cache=True, sync_to_thread=False),
            "principal": Provide(current_principal, sync_to_thread=False),
        },
        exception_handlers=EXCEPTION_HANDLERS,
        before_request=check_permission,  # each route's permission (api/security/guards.py)
        lifespan=[lifespan],
        logging_config=None,  # the process's logging stays ours (workers/logs.py)
        openapi_config=OpenAPIConfig(
            title="Task Execution Service",
            version="1.0.0",
            description="Submit, monitor and manage tasks. Errors use one envelope.",
            path="/schema",
            components=Components(security_schemes=SECURITY_SCHEMES),
            render_plugins=[Completed(page, finish) for page in docs_plugins()],
            operation_id_creator=operation_id,
        ),
    )
    # Authentication and rate limits run in front of the router (see api/security/gate.py).
    app.asgi_handler = Gate(app.asgi_handler, lambda: runtime.security)
    if metrics is not None:  # around the gate: its own answers (401, 429) count too
        app.asgi_handler = RequestMetrics(app.asgi_handler, metrics, app.asgi_router.handle_routing)
    # The request id and the access line cover everything inside it.
    app.asgi_handler = AccessLog(app.asgi_handler, runtime.settings.access_log)
    if tracing.active():  # outermost: the access line carries the request's trace id
        app.asgi_handler = TracedRequests(app.asgi_handler)
    return app
