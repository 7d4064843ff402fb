"""Side by side (issue 7): the same workload on taskexec, Celery + Redis and Procrastinate,
in one run on one machine, printed as medians with our/their ratios.

    python -m bench compare [--tasks 5000] [--repeat 3] [--rates 200,500] [--seconds 10]
                            [--idle 200] [--only taskexec,celery,procrastinate]
                            [--json FILE] [--plot FILE.png]

Every system runs ``calculate-order-total`` (subtotal, 8% tax, total, rounded half-up)
and is driven by one client process. Ours: over HTTP to ``taskexec serve`` (1 process)
with ``taskexec worker`` (1 process) on PostgreSQL and a nats-server; the peers through
their client libraries (bench/peers: how each is set up and why). Also printed: the CPU
per completed task and peak RSS of every process of each system, of the database server
and of the client, with our memory limits checked (bench/resources.py, bench/cost.py).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from bench.common import DEFAULT_PG, percentile
from bench.cost import limits
from bench.cost import table as cost_table
from bench.resources import Meter

#: What ``Meter`` leaves in ``Result.extra``: printed as the cost table.
COST_KEYS = ("peak_rss_mb", "cpu_per_task_ms", "processes", "rss_limits")


@dataclass
class Result:
    """One system's figures: throughputs per repeat, latency samples in seconds."""

    name: str
    single: list[float] = field(default_factory=list)
    bulk: list[float] = field(default_factory=list)
    submit: dict[str, list[float]] = field(default_factory=dict)  # rate -> latencies
    idle: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def peers(args: argparse.Namespace) -> dict[str, Callable[[], AbstractContextManager[Any]]]:
    """Factories by name; the peers' libraries are imported only when asked for (they are
    bench-only extras: ``pip install -e .[bench]``)."""

    def ours() -> AbstractContextManager[Any]:
        from bench.e2e import TaskexecPeer

        return TaskexecPeer(args.database_url, concurrency=args.worker_concurrency)

    def celery() -> AbstractContextManager[Any]:
        from bench.peers.celery_peer import CeleryPeer

        return CeleryPeer()

    def procrastinate() -> AbstractContextManager[Any]:
        from bench.peers.procrastinate_peer import ProcrastinatePeer

        return ProcrastinatePeer(args.database_url)

    return {"taskexec": ours, "celery": celery, "procrastinate": procrastinate}


def measure(name: str, peer: Any, args: argparse.Namespace) -> Result:
    """The four measurements; meanwhile the peak RSS of the peer's processes (its
    ``processes()``: name -> pids) and, over the throughput runs, CPU per task."""
    result = Result(name)
    processes = getattr(peer, "processes", None)
    with Meter(processes() if processes is not None else {}) as meter:
        for round_ in range(args.repeat):
            single = partial(peer.throughput, args.tasks)
            result.single.append(meter.measured("single", args.tasks, single))
            n = args.tasks * args.bulk_factor
            bulk = meter.measured("bulk", n, partial(peer.throughput_bulk, n))
            if bulk is not None:
                result.bulk.append(bulk)
            _progress(
                name,
                f"round {round_ + 1}: {result.single[-1]:,.0f} tasks/s single"
                + (f", {bulk:,.0f} bulk" if bulk is not None else ""),
            )
        for rate in args.rates:
            result.submit[f"{rate:g}"] = peer.submit_latency(rate, args.seconds)
            _progress(name, f"submit latency at {rate:g}/s measured")
        result.idle = peer.idle_latency(args.idle)
    result.extra["peak_rss_mb"] = meter.peak_rss_mb
    result.extra["cpu_per_task_ms"] = meter.cpu_per_task_ms
    result.extra["processes"] = meter.processes
    result.extra["rss_limits"] = limits(name, meter.peak_rss_mb)
    return result


def run(args: argparse.Namespace) -> list[Result]:
    factories = peers(args)
    results = []
    for name in args.only:
        _progress(name, "starting")
        with factories[name]() as peer:
            results.append(measure(name, peer, args))
    return results


def report(results: Sequence[Result]) -> str:
    """A table of medians (throughput) and p50/p99 (latency), with taskexec/peer ratios."""
    lines = []

    def median(values: list[float]) -> float:
        return statistics.median(values) if values else float("nan")

    header = f"{'':34}" + "".join(f"{r.name:>16}" for r in results)
    lines.append(header)
    rows: list[tuple[str, Callable[[Result], float], str]] = [
        ("throughput, 1 task/request (tasks/s)", lambda r: median(r.single), "{:16,.0f}"),
        ("throughput, bulk (tasks/s)", lambda r: median(r.bulk), "{:16,.0f}"),
    ]
    rates = sorted({rate for r in results for rate in r.submit}, key=float)
    for rate in rates:
        for q in (50, 99):
            rows.append((f"submit p{q} at {rate}/s (ms)", _submit_ms(rate, q), "{:16.2f}"))
    for q in (50, 99):
        rows.append((f"idle submit->done p{q} (ms)", _idle_ms(q), "{:16.2f}"))
    ours = next((r for r in results if r.name == "taskexec"), None)
    for label, value, fmt in rows:
        line = f"{label:34}" + "".join(fmt.format(value(r)) for r in results)
        if ours is not None:
            ratios = [
                f"{r.name} {value(ours) / value(r):.2f}x"
                for r in results
                if r is not ours and value(r) == value(r) and value(r) != 0
            ]
            if ratios:
                line += "   ours/theirs: " + ", ".join(ratios)
        lines.append(line)
    for r in results:
        for key, value in r.extra.items():
            if key not in COST_KEYS:  # those make the table below
                lines.append(f"{r.name} {key}: {_rounded(value)}")
    lines.append(cost_table(results))
    return "\n".join(lines)


def _submit_ms(rate: str, q: float) -> Callable[[Result], float]:
    return lambda r: percentile(r.submit.get(rate, []), q) * 1000


def _idle_ms(q: float) -> Callable[[Result], float]:
    return lambda r: percentile(r.idle, q) * 1000


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 2)
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def _progress(name: str, text: str) -> None:
    print(f"  [{name}] {text}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench compare", description=__doc__)
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--bulk-factor", type=int, default=2, help="bulk runs tasks x this")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rates", type=_floats, default=[200.0, 500.0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--idle", type=int, default=200)
    parser.add_argument("--worker-concurrency", type=int, default=32)
    parser.add_argument("--database-url", default=DEFAULT_PG)
    parser.add_argument("--only", type=lambda s: s.split(","), default=list(peers_names()))
    parser.add_argument("--json", type=Path, help="write every sample here")
    parser.add_argument("--plot", type=Path, help="draw throughput and latency (PNG)")
    args = parser.parse_args(argv)
    results = run(args)
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1))
    if args.plot:
        from bench.plot import draw

        draw(results, args.plot)


def peers_names() -> tuple[str, ...]:
    return ("taskexec", "celery", "procrastinate")


def _floats(text: str) -> list[float]:
    return [float(part) for part in text.split(",")]


if __name__ == "__main__":
    main()
