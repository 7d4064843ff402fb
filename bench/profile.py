"""Where the CPU of a task goes: py-spy samples of ``taskexec serve`` and ``taskexec
worker`` (only the thread holding the GIL: Python's CPU, not waiting) during a
throughput run, grouped by component.

    python -m bench profile [--tasks 5000] [--connections 128] [--bulk] [--rate 200]

Needs py-spy (the bench extra). Sampling slows the processes down a little; the shares,
not the rate printed, are the result.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from bench.common import DEFAULT_PG
from bench.e2e import submit_latency, throughput, throughput_bulk
from bench.stack import Stack

# Threads and roles: the first key found anywhere in a stack wins (list order).
COMPONENTS = [
    ("record_reports", "results consumer: apply + save reports"),
    ("ResultsConsumer", "results consumer: pull, decode, ack"),
    ("GroupCommit", "group commit: decide + save submits"),
    ("ProjectionRunner", "projection runner"),
    ("Prefetcher", "projection runner (read ahead)"),
    ("Outbox.read", "relay: read log, map to messages"),
    ("Relay", "relay: publish to JetStream"),
    ("submit_task", "HTTP: our submit handler (incl. queueing)"),
    ("Worker._run", "worker: run attempts, report"),
    ("Worker._serve", "worker: pull work"),
    ("Attempt.", "worker: run attempts, report"),
]
# The event loop's other work, by package, from the innermost frame outwards: uvicorn's
# ``Server.run`` is at the root of every stack of the loop's thread, and asyncio's frames
# belong to whoever called them (a NATS client's socket writes are the client's).
# Stacks py-spy cuts short (psycopg's, in threads) stay "other".
PACKAGES = [
    ("nats/", "NATS client (publish acks, reads, writes)"),
    ("api/security/gate.py", "HTTP: auth gate (api/security/gate.py)"),
    ("litestar/", "HTTP: Litestar (routing, guards, responses)"),
    ("uvicorn/", "HTTP: uvicorn (parsing, writing)"),
]
LOOP = "event loop, futures, thread hand-offs"  # asyncio's own frames, nobody's above


def component(stack: str) -> str:
    """The component a sampled stack (py-spy's raw format: frames root first, ``;``
    between them) belongs to."""
    found = next((name for key, name in COMPONENTS if key in stack), None)
    if found is not None:
        return found
    for frame in reversed(stack.split(";")):
        found = next((name for key, name in PACKAGES if key in frame), None)
        if found is not None:
            return found
    if "asyncio/" in stack or "concurrent/futures" in stack:
        return LOOP
    return "other"


def py_spy() -> str:
    found = Path(sysconfig.get_path("scripts")) / "py-spy"
    path = str(found) if found.exists() else shutil.which("py-spy")
    if path is None:
        sys.exit("py-spy is not installed: pip install -e .[bench]")
    return path


def breakdown(raw: Path) -> tuple[int, list[tuple[str, float]]]:
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():  # a frame's name with a line break in it: its tail
            continue
        samples = int(count)
        total += samples
        counts[component(stack)] += samples
    return total, [(name, n / max(total, 1) * 100) for name, n in counts.most_common()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench profile", description=__doc__)
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--connections", type=int, default=128)
    parser.add_argument("--bulk", action="store_true", help="bulk submissions instead")
    parser.add_argument("--rate", type=float, help="a fixed offered rate instead")
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--database-url", default=DEFAULT_PG)
    parser.add_argument("--keep", type=Path, help="keep the raw samples in this folder")
    args = parser.parse_args(argv)
    spy = py_spy()
    with tempfile.TemporaryDirectory() as tmp, Stack(args.database_url, concurrency=32) as stack:
        asyncio.run(throughput(stack, 500))  # warm up
        assert stack.serve is not None and stack.worker is not None
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        outputs = {"serve": folder / "serve.txt", "worker": folder / "worker.txt"}
        pids = {"serve": stack.serve.pid, "worker": stack.worker.pid}
        sampling = ["-f", "raw", "-d", str(args.seconds), "-r", "200", "--gil", "--nonblocking"]
        recorders = [
            subprocess.Popen(
                [spy, "record", "-p", str(pids[name]), "-o", str(out), *sampling],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for name, out in outputs.items()
        ]
        if args.rate:
            asyncio.run(submit_latency(stack, args.rate, args.seconds + 1))
            print(f"offered {args.rate:.0f} submits/s")
        elif args.bulk:
            print(f"{asyncio.run(throughput_bulk(stack, args.tasks)):,.0f} tasks/s (bulk)")
        else:
            rate = asyncio.run(throughput(stack, args.tasks, connections=args.connections))
            print(f"{rate:,.0f} tasks/s ({args.connections} connections)")
        for recorder in recorders:
            recorder.wait()
        for name, out in outputs.items():
            total, shares = breakdown(out)
            busy = total / (args.seconds * 200) * 100
            print(f"\n{name}: the GIL was held {busy:.0f}% of the time; of that:")
            for component, share in shares:
                print(f"  {share:5.1f}%  {component}")


if __name__ == "__main__":
    main()
