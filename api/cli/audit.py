"""``taskexec history``, ``taskexec audit export`` and ``taskexec verify``: export and
verify stream the whole store in batches.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any
from uuid import UUID

import msgspec

from api.settings import Settings, parse_duration


def add_commands(commands: Any) -> None:
    """Register ``history``, ``audit export`` and ``verify`` on the ``taskexec`` parser."""
    history = commands.add_parser("history", help="a task's events, oldest first")
    history.add_argument("task_id")
    history.add_argument("--json", action="store_true", help="the API's JSON instead of a table")
    history.set_defaults(func=cmd_history)

    audit = commands.add_parser("audit", help="audit the event store")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    export = audit_commands.add_parser(
        "export", help="every event (tasks, definitions, API keys) in global order, JSON lines"
    )
    export.add_argument("--since", help="only events at or after this time (ISO 8601, UTC)")
    export.add_argument("--until", help="only events before this time (ISO 8601, UTC)")
    export.add_argument("--output", "-o", help="write to this file (default: stdout)")
    export.set_defaults(func=cmd_export)

    verify = commands.add_parser(
        "verify",
        help="check every hash chain, replay every aggregate, compare with the read models; "
        "exit 1 on any difference",
    )
    verify.add_argument("--max-problems", type=int, default=1000, help="print at most N problems")
    verify.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="processes that share the work (default: the CPUs, at most 4, on SQLite; "
        "1 on PostgreSQL, where each process holds 2 connections)",
    )
    verify.add_argument(
        "--stranded-after",
        default="15m",
        help="a PENDING task due, or a RUNNING one past its timeout, unchanged this long "
        "is a finding (seconds or 90s, 15m, 2h; off: none; default 15m)",
    )
    verify.set_defaults(func=cmd_verify)


def cmd_history(settings: Settings, args: argparse.Namespace) -> int:
    from commands.service import UndecodableEvent
    from projections.audit.history import task_history

    try:
        task_id = UUID(args.task_id)
    except ValueError:
        print(f"taskexec history: {args.task_id!r} is not a task id", file=sys.stderr)
        return 2
    from api.bootstrap import event_store

    with event_store(settings) as service:
        try:
            entries = task_history(service, task_id)
        except UndecodableEvent as exc:
            print(f"taskexec history: {exc} (run `taskexec verify`)", file=sys.stderr)
            return 1
    if entries is None:
        print(f"taskexec history: task {task_id} not found", file=sys.stderr)
        return 1
    if args.json:
        history = {"taskId": str(task_id), "events": entries}
        sys.stdout.write(msgspec.json.format(msgspec.json.encode(history)).decode() + "\n")
        return 0
    print(f"task {task_id}: {len(entries)} event(s)")
    print(history_table(entries))
    return 0


def history_table(entries: list[dict[str, Any]], width: int = 60) -> str:
    """A table for people: one row per event; long details are shortened."""
    header = ("VERSION", "TIME", "TYPE", "STATUS", "ACTOR", "HASH", "DETAILS")
    rows = [header]
    for entry in entries:
        details = msgspec.json.encode(entry["data"]).decode()
        if len(details) > width:
            details = details[: width - 1] + "…"
        actor = entry["actor"]
        rows.append(
            (
                str(entry["version"]),
                entry["time"],
                entry["type"],
                entry["status"] or "",
                f"{actor.get('kind', '')}:{actor.get('id', '')}",
                (entry["hash"] or "-")[:12],
                details,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


class UsageError(ValueError):
    """A command-line value cannot be used (exit status 2)."""


def parse_time(text: str) -> datetime:
    """An ISO 8601 date or date-time; without a zone it is UTC."""
    text = text.strip()
    try:
        if len(text) == 10:
            moment = datetime.combine(date.fromisoformat(text), time.min, UTC)
        else:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise UsageError(f"{text!r} is not an ISO 8601 date or time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def cmd_export(settings: Settings, args: argparse.Namespace) -> int:
    from api.cli.progress import ProgressBar
    from commands.service import UndecodableEvent
    from projections.audit.history import export

    try:
        since = parse_time(args.since) if args.since else None
        until = parse_time(args.until) if args.until else None
    except UsageError as exc:
        print(f"taskexec audit export: {exc}", file=sys.stderr)
        return 2
    if since is not None and until is not None and since >= until:
        print("taskexec audit export: --since must lie before --until", file=sys.stderr)
        return 2
    progress = ProgressBar("export")
    from api.bootstrap import event_store

    with event_store(settings) as service:
        try:
            if args.output is None:
                result = export(service, sys.stdout.buffer, since, until, progress)
                sys.stdout.buffer.flush()
            else:
                target = Path(args.output)
                partial = target.with_name(f".{target.name}.partial")
                try:
                    with partial.open("wb") as out:
                        result = export(service, out, since, until, progress)
                    os.replace(partial, target)
                finally:
                    partial.unlink(missing_ok=True)
        except UndecodableEvent as exc:
            print(f"taskexec audit export: {exc} (run `taskexec verify`)", file=sys.stderr)
            return 1
    print(
        f"exported {result.events:,} events up to position {result.last_position:,}"
        + (f" to {args.output}" if args.output else ""),
        file=sys.stderr,
    )
    return 0


def default_jobs(settings: Settings) -> int:
    """The CPUs (at most 4); on PostgreSQL one process: a command line holds at most 2
    connections unless asked for more (docs/operations.md)."""
    if settings.database_url.startswith(("postgresql:", "postgres:")):
        return 1
    return max(1, min(4, os.cpu_count() or 1))


def cmd_verify(settings: Settings, args: argparse.Namespace) -> int:
    from api.bootstrap import command_stores
    from api.cli.progress import ProgressBar
    from projections.audit.verify import Problem, ReadModelMissing, verify

    def show(problem: Problem) -> None:
        print(f"FAIL {problem}", flush=True)

    try:
        # 0 (``off``): no such finding.
        stranded_after_s = parse_duration("--stranded-after", args.stranded_after) or None
    except ValueError as exc:
        print(f"taskexec verify: {exc}", file=sys.stderr)
        return 2
    try:
        report = verify(
            functools.partial(command_stores, settings),
            jobs=args.jobs or default_jobs(settings),
            max_problems=args.max_problems,
            progress=ProgressBar("verify"),
            on_problem=show,
            stranded_after_s=stranded_after_s,
        )
    except ReadModelMissing as exc:
        print(f"taskexec verify: {exc}", file=sys.stderr)
        return 1
    hidden = report.problem_count - len(report.problems)
    if hidden > 0:
        print(f"… and {hidden:,} more problem(s) not shown (--max-problems)")
    print(report.summary())
    return 0 if report.ok else 1
