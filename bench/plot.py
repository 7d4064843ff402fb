"""The picture for docs/benchmarks.md: throughput and latency of each system, one run."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import percentile


def draw(results: Sequence[Any], path: Path) -> None:
    """Three panels: throughput (single, bulk), submit latency p50/p99 per offered rate,
    idle submit -> done p50/p99. ``results`` are ``bench.compare.Result``s."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r.name for r in results]
    fig, (ax_tput, ax_submit, ax_idle) = plt.subplots(1, 3, figsize=(15, 4.8))

    width = 0.38
    xs = range(len(results))
    single = [statistics.median(r.single) if r.single else 0 for r in results]
    bulk = [statistics.median(r.bulk) if r.bulk else 0 for r in results]
    ax_tput.bar([x - width / 2 for x in xs], single, width, label="1 task per call")
    ax_tput.bar([x + width / 2 for x in xs], bulk, width, label="bulk")
    ax_tput.set_xticks(list(xs), names)
    ax_tput.set_ylabel("tasks/s (median)")
    ax_tput.set_title("End to end: submit N, wait for all")
    ax_tput.legend()

    rates = sorted({rate for r in results for rate in r.submit}, key=float)
    for r in results:
        for q, style in ((50, "-o"), (99, "--s")):
            values = [percentile(r.submit.get(rate, []), q) * 1000 for rate in rates]
            ax_submit.plot([float(x) for x in rates], values, style, label=f"{r.name} p{q}")
    ax_submit.set_xlabel("offered submits/s")
    ax_submit.set_ylabel("submit latency (ms)")
    ax_submit.set_yscale("log")
    ax_submit.set_title("Submit latency at a fixed rate")
    ax_submit.legend(fontsize=8)

    p50 = [percentile(r.idle, 50) * 1000 for r in results]
    p99 = [percentile(r.idle, 99) * 1000 for r in results]
    ax_idle.bar([x - width / 2 for x in xs], p50, width, label="p50")
    ax_idle.bar([x + width / 2 for x in xs], p99, width, label="p99")
    ax_idle.set_xticks(list(xs), names)
    ax_idle.set_ylabel("ms")
    ax_idle.set_yscale("log")
    ax_idle.set_title("Idle: submit -> done, one at a time")
    ax_idle.legend()

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
