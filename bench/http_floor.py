"""The floor under the end-to-end figures (issue 7): what one request costs the chosen
HTTP stack alone, before the service does anything.

    python -m bench http_floor [--requests 20000] [--connections 128]

A bare Litestar app served as ``taskexec serve`` serves ours (uvicorn, uvloop, httptools,
no access log), one process, one ``POST /api/v1/tasks`` handler that decodes the same
body into a msgspec Struct and answers 201 with a body of the same size, nothing else: no
database, no auth, no middleware. The same load generator as ``bench e2e`` drives it.
The server's CPU per request is the floor of ``taskexec serve``'s CPU per task with one
task per request: the API process runs on one GIL, so requests/s ≤ 1 / (floor + engine).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import time

from bench.common import EXAMPLE_INPUT
from bench.loadgen import Client, closed_loop
from bench.stack import cpu_seconds, rss_mb

BODY = json.dumps({"taskDefinitionId": "calculate-order-total", "input": EXAMPLE_INPUT}).encode()

APP = """
import uuid
import msgspec
import uvicorn
from litestar import Litestar, post

class Submit(msgspec.Struct, rename="camel"):
    task_definition_id: str
    input: dict

class Created(msgspec.Struct, rename="camel"):
    id: str
    task_definition_id: str
    status: str
    input: dict
    created_at: str

@post("/api/v1/tasks", status_code=201)
async def submit(data: Submit) -> Created:
    return Created(str(uuid.uuid4()), data.task_definition_id, "PENDING", data.input,
                   "2026-12-02T00:00:00.000000Z")

app = Litestar([submit])
uvicorn.run(app, host="127.0.0.1", port={port}, log_level="warning", access_log=False)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _drive(port: int, requests: int, connections: int) -> float:
    client = Client("127.0.0.1", port, {})
    raw = client.build("POST", "/api/v1/tasks", BODY)
    begin = time.perf_counter()
    await closed_loop(client, raw, requests, connections, lambda r: r.status == 201)
    elapsed = time.perf_counter() - begin
    await client.close()
    return requests / elapsed


def _wait_listening(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("the bare app did not start listening")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench http_floor")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-c", APP.replace("{port}", str(port))])
    try:
        _wait_listening(port)
        asyncio.run(_drive(port, 2000, args.connections))  # warm up
        rates, cpus = [], []
        for _ in range(args.repeat):
            before = cpu_seconds(server.pid)
            rates.append(asyncio.run(_drive(port, args.requests, args.connections)))
            cpus.append((cpu_seconds(server.pid) - before) / args.requests * 1000)
        rates.sort()
        cpus.sort()
        print(
            f"bare Litestar POST, {args.connections} connections: "
            f"{rates[len(rates) // 2]:,.0f} requests/s (median of {args.repeat}); "
            f"server CPU {cpus[len(cpus) // 2]:.3f} ms/request (min {cpus[0]:.3f}); "
            f"RSS {rss_mb(server.pid):.0f} MB"
        )
        print(
            f"=> one API process on one GIL tops out at {1000 / cpus[0]:,.0f} requests/s "
            "for HTTP alone, before any work"
        )
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
