"""The worker's HTTP port (``taskexec worker --metrics-port P``): ``/metrics`` for
Prometheus, ``/health/live`` (the process answers) and ``/health/ready`` (it pulls work:
started, not stopping, and its work stream answers, as the worker checks every second).

A standard-library HTTP server on a thread of its own, so that a scrape never waits for
the event loop, nor the loop for a scrape. No credentials: bind it where only Prometheus
and the orchestrator reach (``--metrics-host``, loopback by default).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4


class MetricsServer:
    """Serves ``registry`` (None: metrics are off, ``/metrics`` is 404) and the probes;
    ``ready`` is asked at each ``/health/ready``."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.registry = registry
        self.ready: Callable[[], bool] = lambda: False
        self._server: ThreadingHTTPServer | None = None

    def start(self, host: str, port: int) -> int:
        """Listen (an OSError, say the port is taken, raises here) and serve on a daemon
        thread; returns the port (``0`` picks a free one)."""
        self._server = ThreadingHTTPServer((host, port), _handler(self))
        self._server.daemon_threads = True
        thread = threading.Thread(
            target=self._server.serve_forever, name="metrics-server", daemon=True
        )
        thread.start()
        return int(self._server.server_address[1])

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def answer(self, path: str) -> tuple[int, str, bytes]:
        """(status, content type, body) for a GET of ``path``."""
        path = path.split("?", 1)[0].rstrip("/") or "/"
        if path == "/metrics" and self.registry is not None:
            return 200, CONTENT_TYPE_PLAIN_0_0_4, generate_latest(self.registry)
        if path == "/health/live":
            return 200, "application/json", b'{"status":"ok"}'
        if path == "/health/ready":
            try:
                ready = self.ready()
            except Exception:
                ready = False
            body = json.dumps({"status": "ok" if ready else "unavailable"}).encode()
            return (200 if ready else 503), "application/json", body
        return 404, "application/json", b'{"status":"not found"}'


def _handler(server: MetricsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, content_type, body = server.answer(self.path)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: Prometheus and probes call every few seconds."""

    return Handler
