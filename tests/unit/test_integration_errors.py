"""What an INTEGRATION attempt reports for each kind of answer (the table in
docs/definitions.md, INTEGRATION): the error type and whether it may be retried. A real
HTTP endpoint on the loopback, the worker's real attempt (workers/attempt.py)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from workers.attempt import Attempt, Result
from workers.handlers import HandlerRegistry
from workers.integration import IntegrationExecutor
from workers.protocol import WorkItem


class _Endpoint(BaseHTTPRequestHandler):
    """``/status/<n>``: answers n with a JSON body; ``/text``: 200 without JSON;
    ``/slow``: answers after 2 s; ``/moved``: a redirect to ``/status/200``."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.path == "/slow":
            time.sleep(2)
        status, body, kind = 200, json.dumps({"ok": True}).encode(), "application/json"
        if self.path.startswith("/status/"):
            status = int(self.path.removeprefix("/status/"))
            body = b"" if status == 204 else json.dumps({"status": status}).encode()
        elif self.path == "/text":
            body, kind = b"fine, thanks", "text/plain"
        elif self.path == "/moved":
            status = 302
        self.send_response(status)
        if self.path == "/moved":
            self.send_header("location", "/status/200")
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Endpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


async def attempt(url: str, timeout_ms: int = 5000) -> Result | None:
    item = WorkItem(
        task_id="t",
        attempt=1,
        task_type="INTEGRATION",
        definition_id="d",
        input={"amount": 5},
        timeout_ms=timeout_ms,
        priority="MEDIUM",
        endpoint=url,
    )
    executor = IntegrationExecutor()
    try:
        return await Attempt(item, "w", HandlerRegistry(), executor).run()
    finally:
        await executor.close()


@pytest.mark.parametrize(
    ("path", "error_type", "retryable"),
    [
        ("/status/500", "HTTP_500", True),
        ("/status/502", "HTTP_502", True),
        ("/status/503", "HTTP_503", True),
        ("/status/504", "HTTP_504", True),
        ("/status/429", "HTTP_429", True),
        ("/status/400", "HTTP_400", False),
        ("/status/401", "HTTP_401", False),
        ("/status/403", "HTTP_403", False),
        ("/status/404", "HTTP_404", False),
        ("/status/409", "HTTP_409", False),
        ("/status/422", "HTTP_422", False),
        ("/moved", "HTTP_302", False),  # redirects are not followed
        ("/text", "INVALID_RESPONSE", False),  # 2xx without JSON
        ("/status/204", "INVALID_RESPONSE", False),  # 2xx with no body at all
    ],
)
async def test_each_answer_fails_with_its_type_and_only_5xx_and_429_are_retryable(
    endpoint: str, path: str, error_type: str, retryable: bool
) -> None:
    result = await attempt(endpoint + path)
    assert result is not None
    assert (result.kind, result.error_type, result.retryable) == ("failed", error_type, retryable)


async def test_a_2xx_json_answer_is_the_output(endpoint: str) -> None:
    result = await attempt(f"{endpoint}/status/201")
    assert result == Result("completed", output={"status": 201})


async def test_an_unreachable_endpoint_is_a_retryable_connection_error() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = await attempt(f"http://127.0.0.1:{port}/pay")
    assert result is not None
    assert (result.error_type, result.retryable) == ("CONNECTION_ERROR", True)


async def test_an_answer_later_than_the_timeout_is_a_timeout(endpoint: str) -> None:
    result = await attempt(f"{endpoint}/slow", timeout_ms=300)
    assert result is not None
    assert (result.error_type, result.retryable) == ("TIMEOUT", True)
