"""The peers' command line: ``python -m bench.peers.<peer>`` runs the four measurements,
or, with ``--compare``, weighs worker-setting variants against each other."""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

from bench.peers.common import Peer, percentile


def _ms(values: Sequence[float]) -> str:
    ms = [v * 1000 for v in values]
    return (
        f"p50 {statistics.median(ms):8.2f} ms  p99 {percentile(ms, 99):8.2f} ms  "
        f"max {max(ms):8.2f} ms  (n={len(ms)})"
    )


Factory = Callable[[argparse.Namespace, Mapping[str, Any]], AbstractContextManager[Peer]]


def cli(
    description: str,
    make_peer: Factory,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    variants: Mapping[str, Mapping[str, Any]],
    argv: Sequence[str] | None = None,
) -> None:
    """``python -m bench.peers.<peer>``: the four measurements, medians over repeats; or,
    with ``--compare``, throughput of each worker-setting variant, rounds interleaved (so
    that a noisy neighbour's burst spreads over all variants rather than sinking one).

    ``make_peer(args, overrides)`` builds a peer from the parsed arguments, with the
    variant's keyword arguments (empty for the plain run) taking precedence.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--tasks", type=int, default=3000, help="n for the throughput runs")
    parser.add_argument("--repeats", type=int, default=3, help="throughput runs per kind")
    parser.add_argument("--rate", type=float, default=100.0, help="submits/s, open loop")
    parser.add_argument("--seconds", type=float, default=10.0, help="open-loop duration")
    parser.add_argument("--samples", type=int, default=200, help="idle-latency samples")
    parser.add_argument(
        "--compare", action="store_true", help=f"throughput of: {'; '.join(variants)}"
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.compare:
        _compare(args, make_peer, variants)
    else:
        _measure_all(args, make_peer)


def _measure_all(args: argparse.Namespace, make_peer: Factory) -> None:
    with make_peer(args, {}) as peer:
        print(f"{peer.name}: {args.tasks} tasks, {args.repeats} repeats", flush=True)
        _print_rates("throughput, one submit each:", [
            peer.throughput(args.tasks) for _ in range(args.repeats)
        ])  # fmt: skip
        bulk = [peer.throughput_bulk(args.tasks) for _ in range(args.repeats)]
        if all(b is not None for b in bulk):
            _print_rates("throughput, batch submit:   ", [b for b in bulk if b is not None])
        else:
            print("  throughput, batch submit:    (no batch submission)", flush=True)
        submits = peer.submit_latency(args.rate, args.seconds)
        print(f"  submit latency at {args.rate:g}/s: {_ms(submits)}", flush=True)
        print(f"  idle latency, submit->done:  {_ms(peer.idle_latency(args.samples))}", flush=True)


def _compare(
    args: argparse.Namespace, make_peer: Factory, variants: Mapping[str, Mapping[str, Any]]
) -> None:
    runs: dict[str, list[float]] = {name: [] for name in variants}
    idle: dict[str, list[float]] = {name: [] for name in variants}
    for round_ in range(args.repeats):
        for name, overrides in variants.items():
            with make_peer(args, overrides) as peer:
                runs[name].append(peer.throughput(args.tasks))
                idle[name].extend(peer.idle_latency(max(1, args.samples // args.repeats)))
            print(f"  round {round_ + 1}: {name:40} {runs[name][-1]:8.1f} tasks/s", flush=True)
    print(f"{args.tasks} tasks, {args.repeats} rounds, interleaved:")
    for name in variants:
        _print_rates(f"{name:40}", runs[name])
        print(f"  {'':40} idle latency {_ms(idle[name])}", flush=True)


def _print_rates(label: str, rates: list[float]) -> None:
    print(
        f"  {label} median {statistics.median(rates):8.1f} tasks/s  "
        f"runs {', '.join(f'{r:.1f}' for r in rates)}",
        flush=True,
    )
