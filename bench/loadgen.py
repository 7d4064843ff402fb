"""A small HTTP/1.1 load generator on asyncio streams: keep-alive connections, no parsing
beyond the status line, the headers we need and the body.

Why not httpx: at thousands of requests per second on a 2-core machine the client's own
CPU is part of the measurement, and httpx spends several times more per request than
this. The server sees ordinary HTTP/1.1 requests either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass

# uvicorn closes a keep-alive connection idle for 5 s; one idle this long is not reused, so
# a request is never written into a connection the server is closing at that moment.
MAX_IDLE_S = 4.0


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes


class Connection:
    """One keep-alive connection; one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self.idle_since = time.monotonic()

    @property
    def reusable(self) -> bool:
        """Not closed by the server, and not idle long enough for it to be closing."""
        fresh = time.monotonic() - self.idle_since < MAX_IDLE_S
        return fresh and not self._reader.at_eof() and not self._writer.is_closing()

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def request(self, raw: bytes) -> HttpResponse:
        self._writer.write(raw)
        head = await self._reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = await self._chunked()
        else:
            body = await self._reader.readexactly(int(headers.get("content-length", "0")))
        self.idle_since = time.monotonic()
        return HttpResponse(status, headers, body)

    async def _chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int((await self._reader.readuntil(b"\r\n")).strip(), 16)
            chunk = await self._reader.readexactly(size + 2)
            if size == 0:
                return b"".join(parts)
            parts.append(chunk[:-2])

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()


class Client:
    """A pool of keep-alive connections to one server, with fixed headers."""

    def __init__(self, host: str, port: int, headers: Mapping[str, str]) -> None:
        self._host = host
        self._port = port
        self._headers = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self._idle: list[Connection] = []

    def build(self, method: str, path: str, body: bytes | None = None) -> bytes:
        """The request's bytes (build once, send many times)."""
        head = f"{method} {path} HTTP/1.1\r\nHost: {self._host}:{self._port}\r\n{self._headers}"
        if body is None:
            return f"{head}\r\n".encode()
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        return head.encode() + body

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        conn = None
        while self._idle and conn is None:
            conn = self._idle.pop()
            if not conn.reusable:
                await conn.close()
                conn = None
        if conn is None:
            conn = await Connection.open(self._host, self._port)
        try:
            yield conn
        except BaseException:
            await conn.close()
            raise
        self._idle.append(conn)

    async def send(self, raw: bytes) -> HttpResponse:
        async with self.connection() as conn:
            return await conn.request(raw)

    async def close(self) -> None:
        while self._idle:
            await self._idle.pop().close()


async def closed_loop(
    client: Client,
    raw: bytes,
    requests: int,
    connections: int,
    ok: Callable[[HttpResponse], bool],
) -> None:
    """Send ``raw`` ``requests`` times over ``connections`` keep-alive connections, each
    sending its next request when the last is answered; any answer ``ok`` refuses
    raises."""
    remaining = requests

    async def one_connection() -> None:
        nonlocal remaining
        async with client.connection() as conn:
            while remaining > 0:
                remaining -= 1
                response = await conn.request(raw)
                if not ok(response):
                    raise RuntimeError(f"answered {response.status}: {response.body[:300]!r}")

    await asyncio.gather(*(one_connection() for _ in range(connections)))
