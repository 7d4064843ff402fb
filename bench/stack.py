"""Our service as a user runs it, for the end-to-end benchmark: ``taskexec serve`` and
``taskexec worker`` as separate processes on a fresh PostgreSQL schema and a nats-server
of their own, driven over real HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO

import httpx

from bench.common import fresh_postgres
from bench.loadgen import Client
from bench.resources import child_named
from workers.nats_server import EmbeddedNatsServer

ROOT = Path(__file__).parents[1]
CLI = [sys.executable, "-m", "api.cli"]


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Stack:
    """serve + worker + nats-server + a PostgreSQL schema; a context manager."""

    def __init__(
        self,
        database_url: str,
        concurrency: int = 8,
        port: int = 0,
        root: Path = ROOT,
        env: dict[str, str] | None = None,
    ) -> None:
        self._base_url = database_url
        self._root = root  # whose code serve and worker run (bench ab: another checkout)
        self._env = env or {}  # more variables for both processes (bench ab --env-before)
        self._concurrency = concurrency
        self._port = port
        self._exits = contextlib.ExitStack()
        self.serve: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self.api_key = ""
        self.url = ""
        self.nats_url = ""
        self.nats_pid: int | None = None
        self.database_url = ""

    def __enter__(self) -> Stack:
        try:
            self._start()
        except BaseException:
            self._exits.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._exits.close()

    def _start(self) -> None:
        tmp = Path(self._exits.enter_context(tempfile.TemporaryDirectory(prefix="bench-e2e-")))
        database_url = self._exits.enter_context(fresh_postgres(self._base_url, "e2e"))
        self.database_url = database_url  # its schema of its own, dropped at the end
        nats = EmbeddedNatsServer(tmp / "nats")
        self.nats_url = nats.start()
        self._exits.callback(nats.stop)
        # our child (the embedded server's own process), told apart by its store directory
        self.nats_pid = child_named(os.getpid(), "nats-server", str(tmp / "nats"))
        port = self._port or _free_port()
        env = {
            **os.environ,
            "TASKEXEC_DATABASE_URL": database_url,
            "TASKEXEC_NATS_URL": self.nats_url,
            "TASKEXEC_VAR_DIR": str(tmp / "var"),
            "TASKEXEC_RATE_LIMIT": "off",
            "TASKEXEC_RATE_LIMIT_BULK": "off",
            "TASKEXEC_LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(self._root),
            **self._env,
        }
        permissions = "tasks:execute,tasks:read,tasks:list,tasks:cancel"
        created = subprocess.run(
            [*CLI, "apikey", "create", "--name", "bench", "--permissions", permissions],
            env=env,
            cwd=tmp,
            capture_output=True,
            text=True,
            check=True,
        )
        self.api_key = created.stdout.strip()
        log = self._exits.enter_context((tmp / "processes.log").open("wb"))
        self.log_path = tmp / "processes.log"
        self.serve = self._spawn(["serve", "--port", str(port)], env, tmp, log)
        self.worker = self._spawn(
            ["worker", "--id", "bench", "--concurrency", str(self._concurrency)], env, tmp, log
        )
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline or self.serve.poll() is not None:
                raise RuntimeError((tmp / "processes.log").read_text())
            time.sleep(0.1)

    def _spawn(
        self, args: list[str], env: dict[str, str], cwd: Path, log: IO[bytes]
    ) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [*CLI, *args], env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT
        )

        def stop() -> None:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

        self._exits.callback(stop)
        return process

    def client(self) -> Client:
        port = int(self.url.rsplit(":", 1)[1])
        return Client("127.0.0.1", port, {"X-API-Key": self.api_key})

    def memory(self) -> dict[str, float]:
        assert self.serve is not None and self.worker is not None
        return {"api": rss_mb(self.serve.pid), "worker": rss_mb(self.worker.pid)}

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far by serve and by the worker (not their children)."""
        assert self.serve is not None and self.worker is not None
        return {"api": cpu_seconds(self.serve.pid), "worker": cpu_seconds(self.worker.pid)}


async def completed_count(client: Client) -> int:
    raw = client.build("GET", "/api/v1/tasks?status=COMPLETED&limit=1")
    response = await client.send(raw)
    assert response.status == 200, response.body
    return int(json.loads(response.body)["pagination"]["totalItems"])


async def wait_completed(client: Client, target: int, timeout: float, every: float = 0.01) -> float:
    """Poll the COMPLETED count until it reaches ``target``; the moment it did."""
    deadline = time.perf_counter() + timeout
    while True:
        if await completed_count(client) >= target:
            return time.perf_counter()
        if time.perf_counter() > deadline:
            raise TimeoutError(f"fewer than {target} tasks COMPLETED after {timeout:.0f} s")
        await asyncio.sleep(every)


@contextlib.contextmanager
def running(database_url: str, concurrency: int = 8) -> Iterator[Stack]:
    with Stack(database_url, concurrency) as stack:
        yield stack


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
