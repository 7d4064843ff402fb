"""``taskexec tasks retry``: requeue many finished tasks at once (what ``POST
/api/v1/tasks/{taskId}/retry`` does to one), chosen by status, definition, the type of
their last failure and when they finished.

The tasks are chosen from the task read model, oldest first, and requeued through the
write side in transactions of ``BATCH`` (the aggregate decides: a task that is no longer
FAILED, TIMED_OUT or CANCELLED is skipped, not an error). So the command is safe to run
again, and to interrupt: a second run skips what the first one requeued. ``--until``
defaults to the moment the command starts, so one run never takes up a task that failed
again after being requeued by it; the summary gives that moment, to repeat exactly the
same selection. docs/operations.md, "Retrying failed tasks".
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from api.cli.audit import UsageError, parse_time
from api.settings import Settings

RETRYABLE = ("FAILED", "TIMED_OUT", "CANCELLED")
BATCH = 100  # tasks requeued per transaction


def add_commands(commands: Any) -> None:
    """Register ``tasks retry`` on the ``taskexec`` parser."""
    tasks = commands.add_parser("tasks", help="act on many tasks at once")
    tasks_commands = tasks.add_subparsers(dest="tasks_command", required=True)
    retry = tasks_commands.add_parser(
        "retry",
        help="requeue finished tasks (FAILED, TIMED_OUT, CANCELLED): each runs again from "
        "its next attempt, under its retry policy afresh",
    )
    retry.add_argument(
        "--status",
        required=True,
        action="append",
        help=f"the tasks' status: {', '.join(RETRYABLE)} (repeat, or separate with commas)",
    )
    retry.add_argument("--definition", help="only tasks of this task definition id")
    retry.add_argument("--error-type", help="only tasks whose last failure has this type")
    retry.add_argument(
        "--since", help="only tasks that finished at or after this time (ISO 8601, UTC)"
    )
    retry.add_argument(
        "--until",
        help="only tasks that finished before this time (ISO 8601, UTC; default: now)",
    )
    retry.add_argument("--reason", help="recorded with each requeue (its history shows it)")
    retry.add_argument(
        "--dry-run", action="store_true", help="list the tasks it would retry; record nothing"
    )
    retry.set_defaults(func=cmd_tasks_retry)


def statuses(given: list[str]) -> tuple[str, ...]:
    """The ``--status`` values, upper-cased, each once; UsageError for another status."""
    found = [name.strip().upper() for value in given for name in value.split(",")]
    wrong = sorted({name for name in found if name not in RETRYABLE})
    if wrong:
        raise UsageError(f"--status {', '.join(wrong)}: only {', '.join(RETRYABLE)} can be retried")
    return tuple(dict.fromkeys(found))


def cmd_tasks_retry(settings: Settings, args: argparse.Namespace) -> int:
    from api.bootstrap import command_stores, read_models
    from projections.finished import FinishedTasks, Selection
    from projections.queries import Generation
    from projections.runner import ProjectionRunner
    from projections.task_rows import timestamp_text

    started = datetime.now(UTC)
    try:
        since = parse_time(args.since) if args.since else None
        until = parse_time(args.until) if args.until else started
        chosen = statuses(args.status)
        if since is not None and since >= until:
            raise UsageError("--since must lie before --until")
    except UsageError as exc:
        print(f"taskexec tasks retry: {exc}", file=sys.stderr)
        return 2
    selection = Selection(
        statuses=chosen,
        definition_id=args.definition,
        error_type=args.error_type,
        since=timestamp_text(since) if since is not None else None,
        until=timestamp_text(until),
    )
    with command_stores(settings) as (service, db):
        # The read model's tables as this version has them (no serve may have run yet,
        # or only an older one): created or brought up to date, nothing projected.
        ProjectionRunner(service.read_log, read_models(), db).prepare()
        finished = FinishedTasks(Generation(db))
        total = finished.count(selection)
        if args.dry_run:
            return _dry_run(finished.pages(selection))
        counts = _requeue(service, finished.pages(selection, BATCH), total, args.reason)
    again = until.isoformat(timespec="microseconds").replace("+00:00", "Z")
    print(
        f"retried {counts['requeued']:,} of {total:,} task(s); skipped {counts['skipped']:,} "
        f"(no longer {'/'.join(chosen)}); failed {counts['failed']:,}. "
        f"Tasks that finished before {again} were considered: to repeat this selection, "
        f"pass --until {again}"
    )
    return 1 if counts["failed"] else 0


def _dry_run(pages: Any) -> int:
    """List what a run would retry (from the read model; nothing recorded)."""
    listed = 0
    for page in pages:
        for row in page:
            print(
                f"{row['id']}  {row['status']:<9}  {row['definition_id']}  "
                f"{row['error_type'] or '-'}  finished {row['updated_at']}"
            )
            listed += 1
    print(f"dry run: would retry {listed:,} task(s); nothing recorded", file=sys.stderr)
    return 0


def _requeue(service: Any, pages: Any, total: int, reason: str | None) -> Counter[str]:
    """Requeue every task of ``pages`` (a transaction per page); counts of ``requeued``,
    ``skipped`` (its status changed meanwhile: requeued already, say) and ``failed``."""
    from api.cli.apikey import operator
    from api.cli.progress import ProgressBar
    from commands.errors import Conflict
    from commands.messages import Outcome, RequeueTask

    actor = operator()
    progress = ProgressBar("retry", unit=("tasks", "tasks/s"))
    counts: Counter[str] = Counter(requeued=0, skipped=0, failed=0)
    done = 0
    progress(0, total)
    for page in pages:
        commands = [RequeueTask(UUID(row["id"]), actor, reason) for row in page]
        for row, result in zip(page, service.execute(commands), strict=True):
            if isinstance(result, Outcome):
                counts["requeued"] += 1
            elif isinstance(result, Conflict):
                counts["skipped"] += 1
            else:
                counts["failed"] += 1
                print(f"taskexec tasks retry: task {row['id']}: {result}", file=sys.stderr)
        done += len(page)
        progress(done, max(total, done))
    return counts
