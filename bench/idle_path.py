"""Where an idle task's time goes, hop by hop: one task at a time through serve, a worker
and NATS, each split at the moments the task itself records.

    python -m bench idle_path [--samples 200]

For each task: the client sends ``POST`` (its wall clock), the service decides it
(``createdAt``), the answer arrives, the worker runs it (``executionMetadata``'s start
and end), and the ``completed`` CloudEvent reaches a subscriber beside the client. One
machine, one clock; the task's times are in milliseconds, so a hop under 1 ms reads as
0 or 1. Prints the median and p90 of each hop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from datetime import datetime
from typing import Any

import nats

from bench.common import DEFAULT_PG
from bench.e2e import SUBMIT
from bench.stack import Stack


def _seconds(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def _samples(stack: Stack, samples: int) -> list[dict[str, float]]:
    nc = await nats.connect(stack.nats_url)
    client = stack.client()
    raw = client.build("POST", "/api/v1/tasks", SUBMIT)
    arrived: dict[str, float] = {}
    came = asyncio.Event()

    async def on_completed(msg: Any) -> None:
        arrived[json.loads(msg.data)["subject"]] = time.time()
        came.set()

    await nc.subscribe("tasks.events.completed", cb=on_completed)
    sent: list[tuple[str, float, float]] = []
    for _ in range(samples):
        began = time.time()
        response = await client.send(raw)
        answered = time.time()
        task_id = json.loads(response.body)["id"]
        while task_id not in arrived:
            came.clear()
            await asyncio.wait_for(came.wait(), 10)
        sent.append((task_id, began, answered))
        await asyncio.sleep(0.01)
    rows = []
    for task_id, began, answered in sent:
        if task_id not in arrived:
            continue
        task = json.loads((await client.send(client.build("GET", f"/api/v1/tasks/{task_id}"))).body)
        run = task["executionMetadata"]
        rows.append(
            {
                "sent": began,
                "decided": _seconds(task["createdAt"]),
                "answered": answered,
                "started": _seconds(run["startTime"]),
                "ended": _seconds(run["endTime"]),
                "event": arrived[task_id],
            }
        )
    await client.close()
    await nc.close()
    return rows


HOPS = [
    ("POST sent -> decided (createdAt)", "sent", "decided"),
    ("decided -> answer at client", "decided", "answered"),
    ("decided -> worker starts it", "decided", "started"),
    ("worker runs it", "started", "ended"),
    ("worker ends it -> completed event at client", "ended", "event"),
    ("POST sent -> completed event (the bench's idle figure)", "sent", "event"),
]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench idle_path")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--database-url", default=DEFAULT_PG)
    args = parser.parse_args(argv)
    with Stack(args.database_url) as stack:
        rows = asyncio.run(_samples(stack, args.samples))
    print(f"{len(rows)} tasks, one at a time; ms, median / p90:")
    for label, first, second in HOPS:
        spans = sorted((row[second] - row[first]) * 1e3 for row in rows)
        p90 = spans[int(len(spans) * 0.9)]
        print(f"  {label:58} {statistics.median(spans):6.2f} / {p90:6.2f}")
