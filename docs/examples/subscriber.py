#!/usr/bin/env python3
"""Follow the Task Execution Service's lifecycle events (needs only ``pip install nats-py``).

    python subscriber.py                          # every event still in the stream, then new ones
    python subscriber.py --from-seq 1200          # from stream sequence 1200 on
    python subscriber.py --since 2026-01-31T12:00:00Z
    python subscriber.py --new --subject 'tasks.events.completed'
    python subscriber.py --count 100 --idle-timeout 5 --json

It reads stream TASK_EVENTS with an ordered consumer (JetStream redelivers nothing to it
and restarts it where it stopped if the connection drops), prints one line per event,
and drops repeats by the CloudEvents ``id`` (the relay may republish an event after a
crash; JetStream removes such repeats only within its 120 s window). A real subscriber
would store the last stream sequence it processed and pass it as ``--from-seq`` (plus
one) when it starts again.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

import nats
from nats.js.api import ConsumerConfig, DeliverPolicy

STREAM = "TASK_EVENTS"


class SeenIds:
    """The most recent ``size`` event ids: enough to recognise a republished event."""

    def __init__(self, size: int = 100_000) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._size = size

    def add(self, event_id: str) -> bool:
        """False if ``event_id`` was seen already."""
        if event_id in self._ids:
            self._ids.move_to_end(event_id)
            return False
        self._ids[event_id] = None
        if len(self._ids) > self._size:
            self._ids.popitem(last=False)
        return True


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--server",
        default=os.environ.get("NATS_URL", "nats://127.0.0.1:4222"),
        help="a NATS URL, or several comma-separated (a cluster)",
    )
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--from-seq", type=int, metavar="N", help="start at stream sequence N")
    start.add_argument("--since", metavar="TIME", help="start at this time (ISO 8601, UTC)")
    start.add_argument("--new", action="store_true", help="only events published from now on")
    parser.add_argument("--subject", default="tasks.events.>", help="e.g. tasks.events.failed")
    parser.add_argument("--count", type=int, help="stop after N events")
    parser.add_argument("--idle-timeout", type=float, help="stop after S seconds without events")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    args = parser.parse_args(argv)
    if args.from_seq is not None and args.from_seq < 1:
        parser.error("--from-seq starts at 1")
    if args.since is not None:
        try:
            since = datetime.fromisoformat(args.since.replace("Z", "+00:00"))
        except ValueError:
            parser.error(f"--since {args.since!r} is not an ISO 8601 time")
        args.since = since if since.tzinfo else since.replace(tzinfo=UTC)
    return args


def consumer_config(args: argparse.Namespace) -> ConsumerConfig:
    if args.from_seq is not None:
        return ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=args.from_seq
        )
    if args.since is not None:
        return ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=args.since)
    if args.new:
        return ConsumerConfig(deliver_policy=DeliverPolicy.NEW)
    return ConsumerConfig(deliver_policy=DeliverPolicy.ALL)


def show(sequence: int, event: dict[str, Any], as_json: bool) -> str:
    if as_json:
        return json.dumps({"sequence": sequence, "event": event}, separators=(",", ":"))
    data = event.get("data", {})
    kind = event["type"].removeprefix("io.taskexec.task.").removesuffix(".v1")
    return (
        f"{sequence:>8}  {event['time']}  {kind:<16} task {event['subject']} "
        f"v{event.get('taskversion')}  {data.get('status', '')}"
    )


async def follow(args: argparse.Namespace) -> int:
    servers = [url.strip() for url in args.server.split(",")]  # nats-py wants a list
    nc = await nats.connect(servers=servers, name="taskexec-example-subscriber")
    js = nc.jetstream()
    sub = await js.subscribe(
        args.subject, stream=STREAM, ordered_consumer=True, config=consumer_config(args)
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    seen = SeenIds()
    shown = duplicates = 0
    try:
        while not stop.is_set() and (args.count is None or shown < args.count):
            try:
                msg = await asyncio.wait_for(sub.next_msg(timeout=None), args.idle_timeout)
            except TimeoutError:
                break  # idle for --idle-timeout seconds
            event = json.loads(msg.data)
            if not seen.add(event["id"]):
                duplicates += 1
                continue
            print(show(msg.metadata.sequence.stream, event, args.json), flush=True)
            shown += 1
    finally:
        await sub.unsubscribe()
        await nc.drain()
    print(f"{shown} event(s), {duplicates} duplicate(s) dropped", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(follow(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
