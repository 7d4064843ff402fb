"""``taskexec``: the command line of the service.

``dev``     everything on one machine: embedded nats-server, API, projections, relay,
            results consumer, and one worker process.
``serve``   API + projections + relay + results consumer.
``worker``  a worker process (NATS only; it never opens the database).
``apikey``  create, list and revoke API keys (``create`` prints only the key).
``projections rebuild``  rebuild every read model beside the live one, then switch.
``history TASK_ID``      a task's events, oldest first.
``audit export``         every event in global order, as JSON lines.
``verify``  check every hash chain and compare replayed state with the read models.
``tasks retry``          requeue finished tasks (FAILED, TIMED_OUT, CANCELLED) in bulk.
"""

from __future__ import annotations

import argparse
import sys

from api.cli import apikey, audit, processes, projections, tasks
from api.settings import Settings
from commands import gc_pause
from workers import logs


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except ValueError as exc:  # a malformed TASKEXEC_* variable: one line, no traceback
        print(f"taskexec: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, settings.log_format)  # workers/logs.py
    gc_pause.configure(settings.fast_paths.gc_pause)  # process-wide, like gc itself
    try:
        result: int = args.func(settings, args)
    except KeyboardInterrupt:  # Ctrl-C before a command handles signals itself
        return 130
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="taskexec", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)

    for group in (processes, projections, apikey, audit, tasks):
        group.add_commands(commands)
    return parser
