"""Catch a stall: serve and a worker under an open-loop submit load, with the hooks of
``bench/stall_hooks`` loaded in both, then the slowest submits beside what each process
logged at that moment (long GC passes, long event-loop callbacks, moments when no thread
of the process ran: see bench/stall_hooks/sitecustomize.py).

    python -m bench stalls [--rate 200] [--seconds 20] [--env NAME=VALUE ...]

Prints the latency figures, the ten slowest submits, and every event logged from 100 ms
before the first of them to its end; then every long GC pass during the load, each
process's GC summary and (``--env BENCH_STALL_CENSUS=1``) what its oldest generation
held. The hooks cost a little CPU: the figures are for finding causes, not for comparing
systems.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from bench.common import DEFAULT_PG
from bench.e2e import SUBMIT, throughput
from bench.stack import ROOT, Stack

HOOKS = Path(__file__).parent / "stall_hooks"


async def open_loop(stack: Stack, rate: float, seconds: float) -> list[tuple[float, float]]:
    """(latency, due) of each submit, due every 1/rate s (monotonic clock)."""
    client = stack.client()
    raw = client.build("POST", "/api/v1/tasks", SUBMIT)
    start = time.perf_counter() + 0.05
    found: list[tuple[float, float]] = []

    async def one(due: float) -> None:
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        await client.send(raw)
        found.append((time.perf_counter() - due, due))

    await asyncio.gather(*(one(start + i / rate) for i in range(int(rate * seconds))))
    await client.close()
    return found


def events_near(logs: Path, begin: float, end: float) -> list[str]:
    """Every logged line from ``begin`` to ``end`` (monotonic), with its process."""
    lines = []
    for path in sorted(logs.parent.glob(f"{logs.name}.*")):
        text = path.read_text().splitlines()
        who = text[0].split(" -m ", 1)[-1].split()[0] if text else "?"
        block = False
        for line in text:
            if not line:
                continue
            if not line.startswith(" "):
                stamp = float(line.split(" ", 1)[0])
                block = begin <= stamp <= end and " start " not in line
                if block:
                    lines.append(f"{who:>7} {line}")
            elif block:
                lines.append(f"        {line}")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench stalls")
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--database-url", default=DEFAULT_PG)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-stalls-") as tmp:
        logs = Path(tmp) / "stall"
        env = {"PYTHONPATH": f"{ROOT}:{HOOKS}", "BENCH_STALL_LOG": str(logs)}
        env.update(item.split("=", 1) for item in args.env)
        with Stack(args.database_url, env=env) as stack:
            asyncio.run(throughput(stack, 2000))  # warm: caches full, heap settled
            began = time.monotonic()
            found = asyncio.run(open_loop(stack, args.rate, args.seconds))
            ended = time.monotonic()
        latencies = sorted(latency for latency, _ in found)
        n = len(latencies)
        quantiles = [latencies[int(n * q)] * 1e3 for q in (0.5, 0.99, 0.999)]
        print(
            f"{n} submits at {args.rate:.0f}/s: p50 / p99 / p999 / max "
            f"{' / '.join(f'{ms:.1f}' for ms in [*quantiles, latencies[-1] * 1e3])} ms"
        )
        slowest = sorted(found, reverse=True)[:10]
        for latency, due in slowest:
            print(f"  {latency * 1e3:7.1f} ms, due at {due:.4f}")
        first = min(due for _, due in slowest)
        last = max(due + latency for latency, due in slowest)
        print("\nlogged meanwhile (monotonic time; serve, worker):")
        print("\n".join(events_near(logs, first - 0.1, last)) or "  nothing")
        passes = [line for line in events_near(logs, began, ended) if " gc gen=" in line]
        print(f"\nGC passes over 3 ms of CPU during the load ({len(passes)}):")
        print("\n".join(passes) or "  none")
        print("\nGC per process, over its whole run:")
        print("\n".join(line for line in events_near(logs, 0, float("inf")) if " summary " in line))
        census = [line for line in events_near(logs, 0, float("inf")) if " census " in line]
        if census:
            print("\nWhat the oldest generation held after each long full pass:")
            print("\n".join(census))
