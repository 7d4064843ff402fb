"""Scheduled tasks (issue 24, item 1): ``python -m bench scheduled [--tasks N]``.

``taskexec serve``, ``taskexec worker`` and a nats-server on PostgreSQL (bench/stack.py).
N ``calculate-order-total`` tasks are submitted in bulk with ``scheduledAt`` times spread
over ``--spread`` seconds, the first ``--wait`` seconds after the submits end. Reported:
the CPU each process used per second while every task waited (what waiting costs: no
loop of ours runs over them, JetStream holds their work as message schedules), and the
start delay (``executionMetadata.startTime`` minus ``scheduledAt``, from the read model)
p50/p99/max once all of them completed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import nats
import psycopg

from bench.common import DEFAULT_PG, EXAMPLE_INPUT
from bench.stack import Stack, completed_count, cpu_seconds
from commands.persistence import DatabaseConfig
from workers.protocol import WORK_STREAM

BULK = 500


def rfc3339(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def submit(stack: Stack, times: list[datetime], connections: int = 4) -> None:
    """Every task, ``BULK`` to a request, ``connections`` requests at a time."""
    queue = [times[i : i + BULK] for i in range(0, len(times), BULK)]
    headers = {"X-API-Key": stack.api_key}
    async with httpx.AsyncClient(base_url=stack.url, headers=headers, timeout=120) as client:

        async def send() -> None:
            while queue:
                chunk = queue.pop()
                tasks = [
                    {"taskDefinitionId": "calculate-order-total", "input": EXAMPLE_INPUT,
                     "scheduledAt": rfc3339(at)}
                    for at in chunk
                ]  # fmt: skip
                answer = await client.post("/api/v1/tasks/bulk", json={"tasks": tasks})
                assert answer.status_code == 200 and answer.json()["created"] == len(chunk)

        await asyncio.gather(*(send() for _ in range(connections)))


async def held(stack: Stack) -> int:
    """Messages in TASK_WORK: the schedules the relay has published so far."""
    nc = await nats.connect(stack.nats_url)
    try:
        return (await nc.jetstream().stream_info(WORK_STREAM)).state.messages
    finally:
        await nc.close()


def cpu(stack: Stack) -> dict[str, float]:
    assert stack.nats_pid is not None
    return {**stack.cpu(), "nats-server": cpu_seconds(stack.nats_pid)}


def start_delays(database_url: str) -> list[float]:
    """Seconds from each task's scheduled time to its start, from the read model."""
    config = DatabaseConfig.from_url(database_url)
    with psycopg.connect(config.conninfo(), autocommit=True) as conn:
        schema = config.schema or "public"
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s"
            " AND table_name LIKE 'task_view_g%%' ORDER BY table_name",
            (schema,),
        ).fetchall()
        view = f'"{schema}"."{tables[-1][0]}"'
        rows = conn.execute(f"SELECT scheduled_at, start_time FROM {view}").fetchall()
    parse = datetime.fromisoformat
    return sorted((parse(start) - parse(due)).total_seconds() for due, start in rows)


def percentile(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(len(values) * p))]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with Stack(args.database_url, concurrency=args.concurrency) as stack:
        client = stack.client()
        base = await completed_count(client)
        estimate = args.tasks / 4000 + 5  # seconds the submits take, roughly
        first = datetime.now(UTC) + timedelta(seconds=estimate + args.wait)
        step = args.spread / args.tasks
        times = [first + timedelta(seconds=step * n) for n in range(args.tasks)]
        began = time.monotonic()
        await submit(stack, times)
        submitted_s = time.monotonic() - began
        for _ in range(3000):  # the relay publishes them (at most 10 minutes)
            if await held(stack) >= args.tasks:
                break
            await asyncio.sleep(0.2)
        published_s = time.monotonic() - began
        window = (first - datetime.now(UTC)).total_seconds() - 1.0
        if window < 2:
            raise SystemExit(f"submits took {published_s:.0f} s: raise --wait")
        before = cpu(stack)
        await asyncio.sleep(window)  # every task waits
        after = cpu(stack)
        waiting = {name: (after[name] - before[name]) / window for name in after}
        deadline = time.monotonic() + args.spread + 600
        while await completed_count(client) < base + args.tasks:
            assert time.monotonic() < deadline, "tasks did not all complete"
            await asyncio.sleep(0.5)
        await client.close()
        delays = start_delays(stack.database_url)
    return {
        "tasks": args.tasks,
        "submitted_s": round(submitted_s, 1),
        "published_s": round(published_s, 1),
        "waiting_window_s": round(window, 1),
        "waiting_cpu_per_s": {k: round(v, 4) for k, v in waiting.items()},
        "start_delay_ms": {
            "p50": round(percentile(delays, 0.50) * 1000, 1),
            "p99": round(percentile(delays, 0.99) * 1000, 1),
            "max": round(delays[-1] * 1000, 1),
            "min": round(delays[0] * 1000, 1),
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench scheduled", description=__doc__)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--wait", type=float, default=20.0, help="s between submits and first")
    parser.add_argument("--spread", type=float, default=None, help="s over which they are due")
    parser.add_argument("--concurrency", type=int, default=16, help="the worker's")
    parser.add_argument("--database-url", default=DEFAULT_PG)
    args = parser.parse_args(argv)
    if args.spread is None:
        args.spread = max(10.0, args.tasks / 1500)  # within one worker's pace
    print(json.dumps(asyncio.run(run(args)), indent=2))


if __name__ == "__main__":
    main()
