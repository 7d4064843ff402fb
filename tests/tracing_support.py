"""Traces for tests: ``Receiver``, a receiver of OTLP over HTTP (protobuf) for what real
processes export, decoded with the OpenTelemetry protocol's own messages (any other POST
path is an INTEGRATION task's endpoint: its headers are kept, it answers ``{"ok":
true}``); ``in_memory``, tracing on in this process into the SDK's in-memory exporter.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from workers import tracing

KINDS = {1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]
    error: bool


@dataclass
class Receiver:
    """Serves on a free loopback port until ``close``; ``spans`` and ``calls`` fill up."""

    port: int = 0
    spans: list[ReceivedSpan] = field(default_factory=list)
    calls: list[dict[str, str]] = field(default_factory=list)  # an endpoint's request headers

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.path == "/v1/traces":
                    receiver._received(body)
                    self._answer(ExportTraceServiceResponse().SerializeToString(), "protobuf")
                else:
                    receiver.calls.append({k.lower(): v for k, v in self.headers.items()})
                    self._answer(json.dumps({"ok": True}).encode(), "json")

            def _answer(self, body: bytes, kind: str) -> None:
                self.send_response(200)
                self.send_header("content-type", f"application/{kind}")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _received(self, body: bytes) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(
                        ReceivedSpan(
                            service=resource.get("service.name", ""),
                            name=span.name,
                            kind=KINDS.get(span.kind, str(span.kind)),
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            attributes={a.key: _value(a.value) for a in span.attributes},
                            error=span.status.code == 2,
                        )
                    )

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        return [span for span in list(self.spans) if span.trace_id == trace_id]

    def until(self, found: Callable[[], bool], timeout: float = 30.0) -> None:
        """Wait until ``found()`` (spans are exported in batches, moments later)."""
        wait_for(found, timeout, lambda: [(s.service, s.name) for s in self.spans])


def wait_for(found: Callable[[], bool], timeout: float, seen: Callable[[], object]) -> None:
    """Poll ``found()`` until true; fail after ``timeout`` s, showing ``seen()``."""
    deadline = time.monotonic() + timeout
    while not found():
        assert time.monotonic() < deadline, seen()
        time.sleep(0.05)


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


@contextmanager
def in_memory() -> Iterator[tuple[InMemorySpanExporter, TracerProvider]]:
    """Tracing on (workers/tracing.py) into an in-memory exporter, off again afterwards."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(provider)
    try:
        yield exporter, provider
    finally:
        tracing.use(None)
