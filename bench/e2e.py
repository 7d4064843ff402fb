"""End to end, as a user sees it (issue 7): submit ``calculate-order-total`` tasks over
HTTP to ``taskexec serve`` (1 process) with ``taskexec worker`` (1 process) on
PostgreSQL and a nats-server, and wait until they are COMPLETED.

    python -m bench e2e [options of python -m bench compare]   (ours alone)

Measured: throughput with one task per request and with bulk requests, submit latency at
fixed offered rates (open loop; latency counts from the moment a request was due, so a
stalled server is not hidden), idle submit -> COMPLETED latency (seen as the
``completed`` lifecycle event on NATS, as a subscriber sees it); ``bench.compare`` adds
the CPU per task and peak resident memory of serve, worker and nats-server
(``TaskexecPeer.processes``, measured by ``bench.resources``).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import nats

from bench.common import DEFAULT_PG, EXAMPLE_INPUT
from bench.loadgen import HttpResponse, closed_loop
from bench.stack import Stack, completed_count, wait_completed

SUBMIT = json.dumps({"taskDefinitionId": "calculate-order-total", "input": EXAMPLE_INPUT}).encode()


async def throughput(stack: Stack, tasks: int, connections: int = 128) -> float:
    """Tasks/s from the first submit to the moment all of them are COMPLETED."""
    client = stack.client()
    raw = client.build("POST", "/api/v1/tasks", SUBMIT)
    base = await completed_count(client)
    begin = time.perf_counter()
    await closed_loop(client, raw, tasks, connections, lambda r: r.status == 201)
    done = await wait_completed(client, base + tasks, timeout=600)
    await client.close()
    return tasks / (done - begin)


async def throughput_bulk(
    stack: Stack, tasks: int, batch: int = 500, connections: int = 4
) -> float:
    client = stack.client()
    body = json.dumps(
        {"tasks": [{"taskDefinitionId": "calculate-order-total", "input": EXAMPLE_INPUT}] * batch}
    ).encode()
    raw = client.build("POST", "/api/v1/tasks/bulk", body)
    base = await completed_count(client)
    requests = -(-tasks // batch)

    def created_all(response: HttpResponse) -> bool:
        return response.status == 200 and json.loads(response.body)["created"] == batch

    begin = time.perf_counter()
    await closed_loop(client, raw, requests, connections, created_all)
    done = await wait_completed(client, base + requests * batch, timeout=600)
    await client.close()
    return requests * batch / (done - begin)


async def submit_latency(stack: Stack, rate: float, seconds: float) -> list[float]:
    """Open loop at ``rate`` requests/s; each latency counts from when the request was due."""
    client = stack.client()
    raw = client.build("POST", "/api/v1/tasks", SUBMIT)
    latencies: list[float] = []
    count = int(rate * seconds)
    start = time.perf_counter() + 0.05

    async def one(due: float) -> None:
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        response = await client.send(raw)
        latencies.append(time.perf_counter() - due)
        if response.status != 201:
            raise RuntimeError(f"submit answered {response.status}: {response.body!r}")

    await asyncio.gather(*(one(start + i / rate) for i in range(count)))
    await client.close()
    return latencies


async def idle_latency(stack: Stack, samples: int) -> list[float]:
    """One task at a time: POST -> its ``completed`` event arrives on NATS."""
    nc = await nats.connect(stack.nats_url)
    client = stack.client()
    raw = client.build("POST", "/api/v1/tasks", SUBMIT)
    waiting: dict[str, asyncio.Future[float]] = {}
    arrived: dict[str, float] = {}  # the event may come before we have read the answer

    async def on_completed(msg: Any) -> None:
        subject = json.loads(msg.data)["subject"]
        arrived[subject] = time.perf_counter()
        future = waiting.pop(subject, None)
        if future is not None and not future.done():
            future.set_result(arrived[subject])

    sub = await nc.subscribe("tasks.events.completed", cb=on_completed)
    latencies: list[float] = []
    loop = asyncio.get_running_loop()
    for _ in range(samples):
        begin = time.perf_counter()
        response = await client.send(raw)
        task_id = json.loads(response.body)["id"]
        if task_id in arrived:
            done = arrived.pop(task_id)
        else:
            future: asyncio.Future[float] = loop.create_future()
            waiting[task_id] = future
            done = await asyncio.wait_for(future, 10)
            arrived.pop(task_id, None)
        latencies.append(done - begin)
        await asyncio.sleep(0.01)
    await sub.unsubscribe()
    await nc.close()
    await client.close()
    return latencies


class TaskexecPeer:
    """Our service behind the same four measurements as the peers (bench/peers)."""

    name = "taskexec"

    def __init__(self, database_url: str = DEFAULT_PG, concurrency: int = 32) -> None:
        self._database_url = database_url
        self._concurrency = concurrency
        self._stack: Stack | None = None

    def __enter__(self) -> TaskexecPeer:
        self._stack = Stack(self._database_url, concurrency=self._concurrency).__enter__()
        asyncio.run(throughput(self._stack, 500))  # warm up: connections, caches
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._stack is not None:
            self._stack.__exit__(None, None, None)
            self._stack = None

    @property
    def stack(self) -> Stack:
        assert self._stack is not None, "use TaskexecPeer as a context manager"
        return self._stack

    def processes(self) -> dict[str, list[int]]:
        """Our processes, for ``bench.resources.Meter``: serve, worker, nats-server."""
        stack = self.stack
        assert stack.serve is not None and stack.worker is not None
        found = {"api": [stack.serve.pid], "worker": [stack.worker.pid]}
        if stack.nats_pid is not None:
            found["nats-server"] = [stack.nats_pid]
        return found

    def throughput(self, n: int) -> float:
        return asyncio.run(throughput(self.stack, n))

    def throughput_bulk(self, n: int) -> float | None:
        return asyncio.run(throughput_bulk(self.stack, n))

    def submit_latency(self, rate: float, seconds: float) -> list[float]:
        return asyncio.run(submit_latency(self.stack, rate, seconds))

    def idle_latency(self, samples: int) -> list[float]:
        return asyncio.run(idle_latency(self.stack, samples))


def main(argv: list[str] | None = None) -> None:
    """Our side alone; ``python -m bench compare`` runs it beside the peers."""
    from bench.compare import main as compare

    compare(["--only", "taskexec", *(argv or [])])


if __name__ == "__main__":
    main()
