"""A TCP proxy on loopback in front of PostgreSQL that can cut the database off.

- ``cut("drop")``: a silent network. Nothing is forwarded either way and nothing is
  closed: bytes already read wait in the proxy, the rest in the kernel's buffers; new
  connections are accepted and held (their startup packet waits too). ``heal()`` lets
  everything flow again, as TCP retransmission would after a partition.
- ``cut("refuse")``: the server is gone. Every open connection is reset, and new ones
  are closed as soon as they are accepted, until ``heal()``.

It runs its own event loop on a thread, so a synchronous test drives it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, Literal

Mode = Literal["drop", "refuse"]
CHUNK = 65536


class PgProxy:
    """``127.0.0.1:port`` forwards to ``upstream_host:upstream_port`` until cut."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._flowing = asyncio.Event()
        self._mode: Mode | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0
        self.accepted = 0  # connections accepted, all told
        self.refused = 0  # connections closed at once while refusing

    def start(self) -> PgProxy:
        self._thread.start()
        self._call(self._start()).result(10)
        return self

    def stop(self) -> None:
        self._call(self._stop()).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def cut(self, mode: Mode) -> None:
        self._call(self._cut(mode)).result(10)

    def heal(self) -> None:
        self._call(self._heal()).result(10)

    def _call(self, coro: Coroutine[Any, Any, None]) -> concurrent.futures.Future[None]:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    async def _start(self) -> None:
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._flowing.set()

    async def _cut(self, mode: Mode) -> None:
        self._mode = mode
        if mode == "drop":
            self._flowing.clear()
            return
        for writer in list(self._writers):  # refuse: the server went away
            writer.transport.abort()

    async def _heal(self) -> None:
        self._mode = None
        self._flowing.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self._refusing():
            self.refused += 1
            writer.transport.abort()
            return
        self._writers.add(writer)
        try:
            await self._flowing.wait()  # dropped: held, unanswered, until healed
            if self._refusing():
                return
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
            self._writers.add(up_writer)
            try:
                await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
            finally:
                self._writers.discard(up_writer)
                up_writer.transport.abort()
        except OSError:
            pass
        finally:
            self._writers.discard(writer)
            writer.transport.abort()

    def _refusing(self) -> bool:
        return self._mode == "refuse"

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while True:
                await self._flowing.wait()
                data = await reader.read(CHUNK)
                if not data:
                    break
                await self._flowing.wait()  # read just before a cut: held until healed
                writer.write(data)
                await writer.drain()
        writer.transport.abort()  # one side ended: end the other (as a proxy would)
