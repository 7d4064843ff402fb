"""A token endpoint and an INTEGRATION service on the loopback, for the tests of
``executionConfig.auth`` (tests/unit/test_integration_credentials.py,
tests/integration/test_integration_auth.py): what each was sent is kept."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from tests.conftest import reply_json


@dataclass
class Local:
    """``/token``: the client-credentials grant for the client ``client`` and ``secret``
    (tokens ``tok-1``, ``tok-2``, … valid ``expires_in`` s; ``refuse``: 401
    ``invalid_client``); any other path is the service: it answers ``{"paid": true}``,
    401 to a token in ``rejected``, and 503 to its first ``busy`` calls."""

    secret: str
    expires_in: int = 3600
    refuse: bool = False
    busy: int = 0
    rejected: set[str] = field(default_factory=set)
    grants: list[dict[str, Any]] = field(default_factory=list)  # token requests seen
    calls: list[dict[str, str]] = field(default_factory=list)  # the service's headers
    url: str = ""

    def answer(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        if path == "/token":
            form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            basic = headers.get("authorization", "").removeprefix("Basic ")
            self.grants.append({"form": form, "client": base64.b64decode(basic).decode()})
            if self.refuse or self.grants[-1]["client"] != f"client:{self.secret}":
                return 401, {"error": "invalid_client", "error_description": "who are you?"}
            token = f"tok-{len(self.grants)}"
            return 200, {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": self.expires_in,
            }
        self.calls.append(headers)
        if headers.get("authorization", "").removeprefix("Bearer ") in self.rejected:
            return 401, {"error": "token revoked"}
        if len(self.calls) <= self.busy:
            return 503, {"error": "busy"}
        return 200, {"paid": True}


@contextmanager
def serve_local(secret: str) -> Iterator[Local]:
    """A ``Local`` serving on a free loopback port (``url``) until the block ends."""
    state = Local(secret)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            headers = {k.lower(): v for k, v in self.headers.items()}
            reply_json(self, *state.answer(self.path, headers, body))

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
