"""The cost table of ``python -m bench compare``: CPU per completed task of every process
(medians over the repeated runs) and peak RSS, with our memory limits checked.

It reads what ``bench.resources.Meter`` left in each result's ``extra``
(``cpu_per_task_ms``, ``peak_rss_mb``, ``processes``), as written to the JSON file.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from bench.resources import CLIENT, DATABASE, DERIVED, TOTAL, TOTAL_WITH_DATABASE

#: Our limits (issue 23): peak RSS of ``taskexec serve`` and of ``taskexec worker``.
LIMITS_MB: dict[str, dict[str, float]] = {"taskexec": {"api": 150.0, "worker": 100.0}}
LABELS = ("single", "bulk")
WHAT = {
    ("taskexec", "api"): "api (taskexec serve)",
    ("taskexec", "worker"): "worker (taskexec worker)",
    ("taskexec", "nats-server"): "nats-server (embedded)",
    ("celery", "worker"): "worker (celery + pool)",
    ("celery", "redis-server"): "redis-server (shared)",
    ("procrastinate", "worker"): "workers (procrastinate)",
    TOTAL: "total",
    DATABASE: "database (all postgres)",
    TOTAL_WITH_DATABASE: "total incl. database",
    CLIENT: "client (bench process) *",
}

NOTES = (
    "  procs: most processes at once in the group (a process and its descendants, summed).",
    "  * client: this process, the load generator for taskexec (whose API is 'api'), the",
    "    client library submitting and collecting results for the peers; not in totals.",
    "  database: CPU of every postgres process during the run, and redis-server's: shared",
    "  servers, so whatever else used them meanwhile counts too.",
)


def limits(system: str, peak_rss_mb: Mapping[str, float]) -> dict[str, dict[str, Any]]:
    """Each limit of ``system``: the limit, the peak seen and whether it held."""
    checked = {}
    for process, limit in LIMITS_MB.get(system, {}).items():
        peak = peak_rss_mb.get(process, float("nan"))
        checked[process] = {"limit_mb": limit, "peak_mb": peak, "ok": peak <= limit}
    return checked


def _median(values: Sequence[float] | None) -> float:
    return statistics.median(values) if values else float("nan")


def _figures(extra: Mapping[str, Any]) -> list[str]:
    """The groups of a system in the order they were measured, then the derived figures."""
    names: list[str] = []
    for key in extra.get("cpu_per_task_ms", {}):
        name = key.rsplit(" (", 1)[0]
        if name not in names and name not in DERIVED:
            names.append(name)
    return [*names, TOTAL, DATABASE, TOTAL_WITH_DATABASE, CLIENT]


def _number(value: float, width: int, fmt: str = ".2f") -> str:
    return f"{value:{width}{fmt}}" if value == value else f"{'-':>{width}}"


def table(results: Sequence[Any]) -> str:
    """``results``: ``bench.compare.Result``s; empty if none carries CPU figures."""
    measured = [r for r in results if r.extra.get("cpu_per_task_ms")]
    if not measured:
        return ""
    runs = max(len(v) for r in measured for v in r.extra["cpu_per_task_ms"].values())
    lines = [
        "",
        f"CPU per completed task (ms of CPU, median of {runs} throughput run(s) per kind) and"
        " peak RSS (MB, sampled every 0.25 s over the system's whole run)",
        f"{'system':15}{'process':28}{'procs':>6}"
        + "".join(f"{label:>10}" for label in LABELS)
        + f"{'peak RSS':>10}  limit",
    ]
    for r in measured:
        cpu: Mapping[str, list[float]] = r.extra["cpu_per_task_ms"]
        rss: Mapping[str, float] = r.extra.get("peak_rss_mb", {})
        counts: Mapping[str, int] = r.extra.get("processes", {})
        checked = limits(r.name, rss)
        for name in _figures(r.extra):
            what = WHAT.get((r.name, name), WHAT.get(name, name))
            count = counts.get(name)
            line = f"{r.name:15}{what:28}{count if count else '':>6}"
            line += "".join(_number(_median(cpu.get(f"{name} ({label})")), 10) for label in LABELS)
            line += _number(rss.get(name, float("nan")), 10, ".1f")
            if name in checked:
                limit = checked[name]
                line += f"  <= {limit['limit_mb']:.0f} MB: {'ok' if limit['ok'] else 'OVER'}"
            lines.append(line)
    lines.extend(_ratios(measured))
    lines.extend(NOTES)
    for r in measured:
        for name, limit in limits(r.name, r.extra.get("peak_rss_mb", {})).items():
            lines.append(
                f"limit: {r.name} {name} peak RSS {limit['peak_mb']:.1f} MB"
                f" <= {limit['limit_mb']:.0f} MB: {'ok' if limit['ok'] else 'OVER'}"
            )
    return "\n".join(lines)


def _ratios(results: Sequence[Any]) -> list[str]:
    ours = next((r for r in results if r.name == "taskexec"), None)
    if ours is None or len(results) < 2:
        return []
    lines = []
    for name in (TOTAL, TOTAL_WITH_DATABASE):
        for label in LABELS:
            key = f"{name} ({label})"
            mine = _median(ours.extra["cpu_per_task_ms"].get(key))
            parts = []
            for r in results:
                theirs = _median(r.extra["cpu_per_task_ms"].get(key))
                if r is not ours and theirs == theirs and theirs > 0:
                    parts.append(f"{r.name} {mine / theirs:.2f}x")
            if parts:
                lines.append(f"CPU per task, {key}, ours/theirs: {', '.join(parts)}")
    return lines
