"""Before and after, side by side in one run: our end-to-end figures on two checkouts,
alternating, so that both see the same machine (issue 7: measure before and after).

    python -m bench ab [--baseline REV] [--rounds 3] [--tasks 5000] [--bulk 0] [--rates 200]
        [--idle 100] [--env-before NAME=VALUE ...] [--env-after NAME=VALUE ...]

``REV`` (default ``HEAD``) is checked out into a temporary worktree; the other side is
this working tree, uncommitted changes included. ``--baseline .``: this tree on both
sides, to compare settings: ``--baseline . --env-before TASKEXEC_METRICS=off`` is the
cost of the metrics (before: off, after: on). Each round starts both stacks afresh
(serve + worker + nats-server + a new PostgreSQL schema), in alternating order, and
measures: end-to-end throughput with one task per request (and, with ``--bulk N``, of
N tasks in bulk requests), CPU per task of serve, of the worker and of the whole machine
(everything: PostgreSQL, nats-server, this client), submit latency at fixed offered
rates, and idle submit -> COMPLETED latency (one task at a time, seen as its
``completed`` event on NATS). The client is this tree's for both sides.
Printed: medians per side and after/before ratios. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import tempfile
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

from bench.common import DEFAULT_PG, percentile
from bench.e2e import idle_latency, submit_latency, throughput, throughput_bulk
from bench.stack import ROOT, Stack


def machine_busy_seconds() -> float:
    """CPU seconds spent by every process on the machine so far (/proc/stat, not idle)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def worktree(rev: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="bench-ab-") as tmp:
        path = Path(tmp) / "tree"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), rev],
            check=True,
            capture_output=True,
        )
        try:
            yield path
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)],
                check=False,
                capture_output=True,
            )


def one_round(root: Path, args: argparse.Namespace, env: list[str]) -> dict[str, float]:
    figures: dict[str, float] = {}
    variables = dict(item.split("=", 1) for item in env)
    with Stack(args.database_url, concurrency=32, root=root, env=variables) as stack:
        asyncio.run(throughput(stack, 500))  # warm up: connections, caches
        measured(stack, figures, "", args.tasks, throughput(stack, args.tasks))
        if args.bulk:
            measured(stack, figures, " (bulk)", args.bulk, throughput_bulk(stack, args.bulk))
        for rate in args.rates:
            latencies = asyncio.run(submit_latency(stack, rate, args.seconds))
            ms = [s * 1e3 for s in latencies]
            figures[f"submit p50 @{rate:g}/s ms"] = statistics.median(ms)
            figures[f"submit p99 @{rate:g}/s ms"] = percentile(ms, 99)
        if args.idle:
            ms = [s * 1e3 for s in asyncio.run(idle_latency(stack, args.idle))]
            figures["idle p50 ms"] = statistics.median(ms)
            figures["idle p99 ms"] = percentile(ms, 99)
    return figures


def measured(
    stack: Stack, figures: dict[str, float], label: str, tasks: int, run: Coroutine[Any, Any, float]
) -> None:
    """Throughput of ``run`` (``tasks`` tasks) and CPU per task of serve, the worker and
    the whole machine, into ``figures``."""
    cpu, busy = stack.cpu(), machine_busy_seconds()
    figures[f"tasks/s{label}"] = asyncio.run(run)
    after, busy_after = stack.cpu(), machine_busy_seconds()
    for process in ("api", "worker"):
        figures[f"{process} CPU ms/task{label}"] = (after[process] - cpu[process]) / tasks * 1e3
    figures[f"machine CPU ms/task{label}"] = (busy_after - busy) / tasks * 1e3


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench ab", description=__doc__)
    parser.add_argument("--baseline", default="HEAD", help="git revision to compare with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument(
        "--rates", type=lambda s: [float(r) for r in s.split(",") if r], default=[200.0]
    )
    parser.add_argument("--bulk", type=int, default=0, help="bulk-submitted tasks (0: none)")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--idle", type=int, default=100, help="idle samples (0: none)")
    parser.add_argument("--database-url", default=DEFAULT_PG)
    for side in ("before", "after"):
        parser.add_argument(
            f"--env-{side}",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help=f"a variable for the {side} side's processes (repeatable)",
        )
    args = parser.parse_args(argv)
    samples: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    envs = {"before": args.env_before, "after": args.env_after}
    tree = contextlib.nullcontext(ROOT) if args.baseline == "." else worktree(args.baseline)
    with tree as base:
        sides = {"before": base, "after": ROOT}
        for round_ in range(args.rounds):
            order = ["before", "after"] if round_ % 2 == 0 else ["after", "before"]
            for side in order:
                figures = one_round(sides[side], args, envs[side])
                samples[side].append(figures)
                shown = ", ".join(f"{k} {v:,.2f}" for k, v in figures.items())
                print(f"round {round_ + 1} {side:6}: {shown}", flush=True)
    print(f"\nmedians of {args.rounds} rounds ({args.baseline} = before, this tree = after)")
    print(f"{'':28} {'before':>10} {'after':>10} {'after/before':>13}")
    for key in samples["before"][0]:
        before = statistics.median(s[key] for s in samples["before"])
        after = statistics.median(s[key] for s in samples["after"])
        print(f"{key:28} {before:10,.2f} {after:10,.2f} {after / before:12.2f}x")


if __name__ == "__main__":
    main()
